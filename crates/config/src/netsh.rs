//! Reader for `netsh dhcp server dump` scripts (docs/config.md section 5).
//!
//! One command a line; `#` banners; keywords in any case; tokens split on blanks, double quotes group a
//! token (`user="Default BOOTP Class"` is one token); every command may carry the `Dhcp Server
//! <\\name|ip> [v4]` prefix. DHCPv6 (`v6`) commands are skipped with one warning, since calloutd serves
//! DHCPv4 only. Commands that change nothing calloutd models (`set napstate`, `Set Bindings`...) are
//! accepted silently; unknown commands are warnings.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::diag::{Diags, Pos};
use crate::model::{
    AuditLogSettings, Class, ClassKind, Filter, FilterList, MacPattern, OptionType, ScopeState,
    ScopeType,
};
use crate::raw::{
    At, RawConfig, RawDefinition, RawOptionValue, RawRange, RawReservation, RawScope,
};
use crate::text::{parse_hex, parse_u64};

/// One token and whether it began with a quote (a quoted token is never a `key=value`).
#[derive(Debug, Clone)]
struct Tok {
    text: String,
    quoted: bool,
}

fn tokenize(line: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut text = String::new();
        let quoted = first == '"';
        let mut in_quotes = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                in_quotes = !in_quotes;
                chars.next();
                continue;
            }
            if c.is_whitespace() && !in_quotes {
                break;
            }
            text.push(c);
            chars.next();
        }
        if in_quotes {
            return Err("unterminated double quote".into());
        }
        out.push(Tok { text, quoted });
    }
    Ok(out)
}

fn is(tok: Option<&Tok>, word: &str) -> bool {
    tok.is_some_and(|t| !t.quoted && t.text.eq_ignore_ascii_case(word))
}

/// Splits `user=`, `vendor=`, `comment=` named arguments from positional ones.
fn split_named(toks: &[Tok]) -> (Vec<&Tok>, HashMap<String, String>) {
    let mut positional = Vec::new();
    let mut named = HashMap::new();
    for t in toks {
        if !t.quoted {
            if let Some((k, v)) = t.text.split_once('=') {
                let key = k.to_ascii_lowercase();
                if matches!(key.as_str(), "user" | "vendor" | "comment") {
                    named.insert(key, v.to_string());
                    continue;
                }
            }
        }
        positional.push(t);
    }
    (positional, named)
}

/// `key = value` pairs in either spacing (`path = "x"`, `path="x"`, `maxsize =70`).
fn pairs(toks: &[Tok]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if let (false, Some((k, v))) = (t.quoted, t.text.split_once('=')) {
            if v.is_empty() {
                let value = toks.get(i + 1).ok_or(format!("no value after `{k}=`"))?;
                out.insert(k.to_ascii_lowercase(), value.text.clone());
                i += 2;
            } else {
                out.insert(k.to_ascii_lowercase(), v.to_string());
                i += 1;
            }
            continue;
        }
        let next = toks
            .get(i + 1)
            .ok_or(format!("`{}` needs `= value`", t.text))?;
        if next.quoted || !next.text.starts_with('=') {
            return Err(format!("expected `=` after `{}`", t.text));
        }
        if next.text.len() > 1 {
            out.insert(t.text.to_ascii_lowercase(), next.text[1..].to_string());
            i += 2;
        } else {
            let value = toks
                .get(i + 2)
                .ok_or(format!("no value after `{} =`", t.text))?;
            out.insert(t.text.to_ascii_lowercase(), value.text.clone());
            i += 3;
        }
    }
    Ok(out)
}

fn netsh_type(word: &str) -> Option<OptionType> {
    Some(match word.to_ascii_uppercase().as_str() {
        "BYTE" => OptionType::Byte,
        "WORD" => OptionType::Word,
        "DWORD" => OptionType::DWord,
        "DWORDDWORD" => OptionType::DWordDWord,
        "STRING" => OptionType::String,
        "IPADDRESS" => OptionType::IPv4Address,
        "IPV6ADDRESS" => OptionType::IPv6Address,
        "BINARY" => OptionType::BinaryData,
        "ENCAPSULATED" => OptionType::EncapsulatedData,
        _ => return None,
    })
}

fn scope_type(word: &str) -> Option<ScopeType> {
    Some(match word.to_ascii_uppercase().as_str() {
        "DHCP" => ScopeType::Dhcp,
        "BOOTP" => ScopeType::Bootp,
        "BOTH" => ScopeType::Both,
        _ => return None,
    })
}

/// A MAC filter pattern: `AA-BB-CC-DD-EE-FF`, `AA-BB-CC-*`, `aabbcc*`.
pub(crate) fn parse_mac_pattern(text: &str) -> Option<MacPattern> {
    let t = text.trim();
    let (head, wildcard) = match t.strip_suffix('*') {
        Some(h) => (h.trim_end_matches(['-', ':']), true),
        None => (t, false),
    };
    let prefix = if head.is_empty() {
        Vec::new()
    } else {
        parse_hex(head)?
    };
    if prefix.len() > 16 || (!wildcard && prefix.is_empty()) {
        return None;
    }
    Some(MacPattern { prefix, wildcard })
}

struct Reader<'d> {
    diags: &'d mut Diags,
    raw: RawConfig,
    scope_index: HashMap<u32, usize>,
    warned_v6: bool,
}

type Res<T> = Result<T, (&'static str, String)>;

fn syntax<T>(msg: impl Into<String>) -> Res<T> {
    Err(("netsh-syntax", msg.into()))
}

fn ip(tok: Option<&&Tok>, what: &str) -> Res<Ipv4Addr> {
    let Some(t) = tok else {
        return syntax(format!("missing {what}"));
    };
    t.text.trim().parse().map_err(|_| {
        (
            "bad-address",
            format!("{what} `{}` is not an IPv4 address", t.text),
        )
    })
}

fn number(tok: Option<&&Tok>, what: &str) -> Res<u64> {
    let Some(t) = tok else {
        return syntax(format!("missing {what}"));
    };
    parse_u64(&t.text).ok_or(("bad-number", format!("{what} `{}` is not a number", t.text)))
}

fn u32_number(tok: Option<&&Tok>, what: &str) -> Res<u32> {
    let n = number(tok, what)?;
    u32::try_from(n).map_err(|_| ("bad-number", format!("{what} {n} is too large")))
}

/// The text of positional argument `i`, empty when absent (names and comments are optional).
fn text_at(p: &[&Tok], i: usize) -> String {
    p.get(i).map(|t| t.text.clone()).unwrap_or_default()
}

/// The `<id> <TYPE>` pair that opens `Add Optiondef` and `set optionvalue`.
fn option_id_and_type(id: &Tok, kind: &Tok) -> Res<(i64, OptionType)> {
    let option_id = crate::text::parse_i64(&id.text).ok_or((
        "bad-number",
        format!("option id `{}` is not a number", id.text),
    ))?;
    let kind = netsh_type(&kind.text)
        .ok_or(("bad-type", format!("unknown option type `{}`", kind.text)))?;
    Ok((option_id, kind))
}

/// A `vendor=`/`user=` class argument; blank means the default class.
fn class_arg(named: &HashMap<String, String>, key: &str) -> Option<String> {
    named
        .get(key)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A range or reservation type word (`what` names it in the error).
fn scope_type_arg(t: &Tok, what: &str) -> Res<ScopeType> {
    scope_type(&t.text).ok_or((
        "netsh-syntax",
        format!("{what} type `{}` is not DHCP, BOOTP or BOTH", t.text),
    ))
}

impl Reader<'_> {
    fn line(&mut self, line_no: u32, line: &str) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return;
        }
        let pos = Pos::line(line_no);
        let toks = match tokenize(trimmed) {
            Ok(t) => t,
            Err(e) => return self.diags.error(&pos, "netsh-syntax", e),
        };
        let mut rest: &[Tok] = &toks;
        if is(rest.first(), "dhcp") && is(rest.get(1), "server") {
            rest = &rest[2..];
            // The server: `\\name` or an address; absent when the dump targets the local server.
            if rest
                .first()
                .is_some_and(|t| t.text.starts_with("\\\\") || t.text.parse::<Ipv4Addr>().is_ok())
            {
                rest = &rest[1..];
            }
        }
        if is(rest.first(), "v4") {
            rest = &rest[1..];
        } else if is(rest.first(), "v6") {
            if !self.warned_v6 {
                self.warned_v6 = true;
                self.diags.warning(
                    &pos,
                    "ignored-v6",
                    "DHCPv6 commands are ignored from here on (calloutd serves DHCPv4 only)",
                );
            }
            return;
        }
        if let Err((rule, msg)) = self.command(&pos, rest) {
            if rule == "unknown-command" {
                self.diags.warning(&pos, rule, msg);
            } else {
                self.diags.error(&pos, rule, msg);
            }
        }
    }

    fn command(&mut self, pos: &Pos, toks: &[Tok]) -> Res<()> {
        let words: Vec<String> = toks
            .iter()
            .take(3)
            .map(|t| t.text.to_ascii_lowercase())
            .collect();
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        match (w(0), w(1)) {
            ("add", "class") => self.add_class(pos, &toks[2..]),
            ("add", "optiondef") => self.add_optiondef(pos, &toks[2..]),
            ("set", "optionvalue") => {
                let v = option_value(&toks[2..])?;
                self.raw.option_values.push(At::new(pos.clone(), v));
                Ok(())
            }
            ("add", "scope") => self.add_scope(pos, &toks[2..]),
            ("add", "filter") => self.add_filter(pos, &toks[2..]),
            ("set", "filter") => {
                let p = pairs(&toks[2..]).or_else(syntax)?;
                for (k, v) in p {
                    let on = match v.trim() {
                        "1" => true,
                        "0" => false,
                        _ => return syntax(format!("`{k}` wants 0 or 1, not `{v}`")),
                    };
                    match k.as_str() {
                        "enforceallowlist" => self.raw.filters_allow = on,
                        "enforcedenylist" => self.raw.filters_deny = on,
                        _ => return syntax(format!("unknown filter setting `{k}`")),
                    }
                }
                Ok(())
            }
            ("set", _) => self.server_setting(&toks[1..]),
            ("scope", _) => self.scope_command(pos, &toks[1..]),
            _ => Err((
                "unknown-command",
                format!("unknown command `{}`", words.join(" ")),
            )),
        }
    }

    fn add_class(&mut self, pos: &Pos, toks: &[Tok]) -> Res<()> {
        let (p, _) = split_named(toks);
        if p.len() < 4 {
            return syntax("Add Class wants \"<name>\" \"<comment>\" <data> <0|1> [b]");
        }
        let binary = is(p.get(4).copied(), "b");
        let data = if binary {
            parse_hex(&p[2].text)
                .ok_or(("bad-hex", format!("class data `{}` is not hex", p[2].text)))?
        } else {
            p[2].text.as_bytes().to_vec()
        };
        let kind = match p[3].text.trim() {
            "0" => ClassKind::User,
            "1" => ClassKind::Vendor,
            other => {
                return syntax(format!(
                    "class type `{other}` is not 0 (user) or 1 (vendor)"
                ))
            }
        };
        self.raw.classes.push(At::new(
            pos.clone(),
            Class {
                name: p[0].text.trim().to_string(),
                kind,
                data,
                description: p[1].text.clone(),
            },
        ));
        Ok(())
    }

    fn add_optiondef(&mut self, pos: &Pos, toks: &[Tok]) -> Res<()> {
        let (p, named) = split_named(toks);
        if p.len() < 4 {
            return syntax("Add Optiondef wants <id> \"<name>\" <TYPE> <0|1> [vendor=...] [comment=...] [default...]");
        }
        let (option_id, kind) = option_id_and_type(p[0], p[2])?;
        let multi_valued = match p[3].text.trim() {
            "0" => false,
            "1" => true,
            other => return syntax(format!("array flag `{other}` is not 0 or 1")),
        };
        self.raw.definitions.push(At::new(
            pos.clone(),
            RawDefinition {
                option_id,
                name: p[1].text.clone(),
                kind,
                multi_valued,
                vendor_class: class_arg(&named, "vendor"),
                description: named.get("comment").cloned().unwrap_or_default(),
                default_value: p[4..].iter().map(|t| t.text.clone()).collect(),
            },
        ));
        Ok(())
    }

    fn server_setting(&mut self, toks: &[Tok]) -> Res<()> {
        let key = toks
            .first()
            .map(|t| t.text.to_ascii_lowercase())
            .unwrap_or_default();
        let arg = toks.get(1);
        let settings = &mut self.raw.settings;
        match key.as_str() {
            "auditlog" => {
                let p = pairs(&toks[1..]).or_else(syntax)?;
                let num = |k: &str| -> Res<u32> {
                    match p.get(k) {
                        None => Ok(0),
                        Some(v) => parse_u64(v)
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or(("bad-number", format!("AuditLog {k} `{v}` is not a number"))),
                    }
                };
                let enabled = match p.get("mode").map(|m| m.to_ascii_uppercase()) {
                    None => true,
                    Some(m) if m == "ENABLE" => true,
                    Some(m) if m == "DISABLE" => false,
                    Some(m) => {
                        return syntax(format!("AuditLog mode `{m}` is not ENABLE or DISABLE"))
                    }
                };
                settings.audit_log = Some(AuditLogSettings {
                    path: p.get("path").cloned().unwrap_or_default(),
                    max_size_mb: num("maxsize")?,
                    min_size_mb: num("minsize")?,
                    interval: num("interval")?,
                    enabled,
                });
            }
            "databasebackupinterval" => {
                settings.database_backup_interval_min = Some(u32_number(arg.as_ref(), "interval")?)
            }
            "databasecleanupinterval" => {
                settings.database_cleanup_interval_min = Some(u32_number(arg.as_ref(), "interval")?)
            }
            "databasename" | "databasepath" | "databasebackuppath" => {
                let value = arg
                    .map(|t| t.text.clone())
                    .ok_or(("netsh-syntax", format!("Set {key} needs a value")))?;
                match key.as_str() {
                    "databasename" => settings.database_name = Some(value),
                    "databasepath" => settings.database_path = Some(value),
                    _ => settings.database_backup_path = Some(value),
                }
            }
            "detectconflictretry" => {
                let n = number(arg.as_ref(), "retry count")?;
                settings.conflict_detection_attempts = u8::try_from(n)
                    .ok()
                    .filter(|n| *n <= 5)
                    .ok_or(("bad-number", format!("DetectConflictRetry {n} is not 0-5")))?;
            }
            // Accepted, nothing calloutd models: interfaces are chosen on the command line, and the
            // Jet database flags have no meaning for calloutd's lease store.
            "bindings"
            | "databaseloggingflag"
            | "databaserestoreflag"
            | "server"
            | "napstate"
            | "dnsconfig"
            | "userclass"
            | "vendorclass" => {}
            _ => return Err(("unknown-command", format!("unknown command `set {key}`"))),
        }
        Ok(())
    }

    fn add_scope(&mut self, pos: &Pos, toks: &[Tok]) -> Res<()> {
        let (p, _) = split_named(toks);
        let id = ip(p.first(), "scope id")?;
        let mask = ip(p.get(1), "subnet mask")?;
        if self.scope_index.contains_key(&u32::from(id)) {
            return Err(("duplicate-scope", format!("scope {id} is added twice")));
        }
        let mut scope = RawScope::new(id, mask);
        scope.name = text_at(&p, 2);
        scope.description = text_at(&p, 3);
        self.scope_index
            .insert(u32::from(id), self.raw.scopes.len());
        self.raw.scopes.push(At::new(pos.clone(), scope));
        Ok(())
    }

    fn add_filter(&mut self, pos: &Pos, toks: &[Tok]) -> Res<()> {
        let (p, _) = split_named(toks);
        let list = match p.first().map(|t| t.text.to_ascii_lowercase()).as_deref() {
            Some("allow") => FilterList::Allow,
            Some("deny") => FilterList::Deny,
            _ => return syntax("Add Filter wants allow|deny <mac> [\"comment\"]"),
        };
        let text = p.get(1).map(|t| t.text.as_str()).unwrap_or("");
        let mac =
            parse_mac_pattern(text).ok_or(("bad-mac", format!("`{text}` is not a MAC pattern")))?;
        let description = text_at(&p, 2);
        self.raw.filters.push(At::new(
            pos.clone(),
            Filter {
                list,
                mac,
                description,
            },
        ));
        Ok(())
    }

    fn scope_command(&mut self, pos: &Pos, toks: &[Tok]) -> Res<()> {
        let (p, _) = split_named(toks);
        let id = ip(p.first(), "scope id")?;
        let Some(&index) = self.scope_index.get(&u32::from(id)) else {
            return Err((
                "unknown-scope",
                format!("scope {id} is used before `add scope`"),
            ));
        };
        let verb = toks
            .get(1)
            .map(|t| t.text.to_ascii_lowercase())
            .unwrap_or_default();
        let what = toks
            .get(2)
            .map(|t| t.text.to_ascii_lowercase())
            .unwrap_or_default();
        let args = toks.get(3..).unwrap_or(&[]);
        let (a, _) = split_named(args);
        let scope = &mut self.raw.scopes[index].item;
        match (verb.as_str(), what.as_str()) {
            ("set", "state") => {
                // 1 active, 0 inactive; 3/2 are the same for switched subnets.
                scope.state = match number(a.first(), "state")? {
                    1 | 3 => ScopeState::Active,
                    0 | 2 => ScopeState::Inactive,
                    n => return syntax(format!("scope state {n} is not 0-3")),
                };
            }
            ("add", "iprange") => {
                let start = ip(a.first(), "range start")?;
                let end = ip(a.get(1), "range end")?;
                if let Some(t) = a.get(2) {
                    scope.kind = scope_type_arg(t, "range")?;
                }
                if a.get(3).is_some() {
                    scope.max_bootp_clients = Some(u32_number(a.get(3), "max BOOTP clients")?);
                }
                if scope.range.is_some() {
                    return Err((
                        "duplicate-range",
                        format!("scope {id} already has an iprange"),
                    ));
                }
                scope.range = Some(At::new(pos.clone(), RawRange { start, end }));
            }
            ("add", "excluderange") => {
                let start = ip(a.first(), "exclusion start")?;
                let end = ip(a.get(1), "exclusion end")?;
                scope
                    .exclusions
                    .push(At::new(pos.clone(), RawRange { start, end }));
            }
            ("set", "optionvalue") => {
                let v = option_value(args)?;
                scope.option_values.push(At::new(pos.clone(), v));
            }
            ("add", "reservedip") => {
                let ip_address = ip(a.first(), "reserved address")?;
                let hex = a.get(1).map(|t| t.text.as_str()).unwrap_or("");
                let client_id = parse_hex(hex)
                    .filter(|b| !b.is_empty())
                    .ok_or(("bad-hex", format!("client id `{hex}` is not hex")))?;
                let kind = match a.get(4) {
                    Some(t) => scope_type_arg(t, "reservation")?,
                    None => ScopeType::Both,
                };
                scope.reservations.push(At::new(
                    pos.clone(),
                    RawReservation {
                        name: text_at(&a, 2),
                        ip_address,
                        client_id,
                        kind,
                        description: text_at(&a, 3),
                        option_values: Vec::new(),
                    },
                ));
            }
            ("set", "reservedoptionvalue") => {
                let ip_address = ip(a.first(), "reserved address")?;
                let v = option_value(args.get(1..).unwrap_or(&[]))?;
                let Some(r) = scope
                    .reservations
                    .iter_mut()
                    .find(|r| r.item.ip_address == ip_address)
                else {
                    return Err((
                        "unknown-reservation",
                        format!("no reservation for {ip_address} in scope {id}"),
                    ));
                };
                r.item.option_values.push(At::new(pos.clone(), v));
            }
            ("set", "name") => scope.name = text_at(&a, 0),
            ("set", "comment") => scope.description = text_at(&a, 0),
            ("set", "superscope") => {
                let name = a
                    .first()
                    .map(|t| t.text.trim().to_string())
                    .unwrap_or_default();
                scope.superscope_name = (!name.is_empty()).then_some(name);
            }
            ("set", "delayoffer") => {
                scope.delay = Duration::from_millis(number(a.first(), "delay")?)
            }
            ("set", "policyactivation") | ("set", "activatepolicies") => {
                let word = a
                    .first()
                    .map(|t| t.text.to_ascii_uppercase())
                    .unwrap_or_default();
                scope.activate_policies = match word.as_str() {
                    "ENABLE" | "1" | "TRUE" => true,
                    "DISABLE" | "0" | "FALSE" => false,
                    _ => return syntax(format!("`{word}` is not ENABLE or DISABLE")),
                };
            }
            // Network Access Protection is gone from Windows; nothing to model.
            ("set", "napstate") | ("set", "napprofile") => {}
            _ => {
                return Err((
                    "unknown-command",
                    format!("unknown scope command `{verb} {what}`"),
                ))
            }
        }
        Ok(())
    }
}

/// `<id> <TYPE> [user=".."] [vendor=".."] "<v1>" ["<v2>" ...]`.
fn option_value(toks: &[Tok]) -> Res<RawOptionValue> {
    let (p, named) = split_named(toks);
    if p.len() < 2 {
        return syntax("optionvalue wants <id> <TYPE> [user=...] [vendor=...] <value>...");
    }
    let (option_id, kind) = option_id_and_type(p[0], p[1])?;
    Ok(RawOptionValue {
        option_id,
        declared_type: Some(kind),
        values: p[2..].iter().map(|t| t.text.clone()).collect(),
        vendor_class: class_arg(&named, "vendor"),
        user_class: class_arg(&named, "user"),
    })
}

/// Reads a netsh dump into raw records; syntax problems go to `diags`.
pub(crate) fn read(text: &str, diags: &mut Diags) -> RawConfig {
    let mut reader = Reader {
        diags,
        raw: RawConfig::default(),
        scope_index: HashMap::new(),
        warned_v6: false,
    };
    for (i, line) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        reader.line(line_no, line);
    }
    reader.raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_pairs() {
        let t = tokenize(
            r#"Dhcp Server \\x set optionvalue 51 DWORD user="Default BOOTP Class" "1800" """#,
        )
        .unwrap();
        let texts: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Dhcp",
                "Server",
                "\\\\x",
                "set",
                "optionvalue",
                "51",
                "DWORD",
                "user=Default BOOTP Class",
                "1800",
                ""
            ]
        );
        assert!(tokenize("a \"b").is_err());
        let p = pairs(
            &tokenize(r#"path = "C:\x y" maxsize=70 minsize =20 interval= 50 mode = ENABLE"#)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(p["path"], "C:\\x y");
        assert_eq!(p["maxsize"], "70");
        assert_eq!(p["minsize"], "20");
        assert_eq!(p["interval"], "50");
        assert!(pairs(&tokenize("path").unwrap()).is_err());
    }

    #[test]
    fn mac_patterns() {
        assert_eq!(
            parse_mac_pattern("AA-BB-CC-*"),
            Some(MacPattern {
                prefix: vec![0xaa, 0xbb, 0xcc],
                wildcard: true
            })
        );
        assert_eq!(
            parse_mac_pattern("aabbccddeeff").map(|m| m.wildcard),
            Some(false)
        );
        assert_eq!(
            parse_mac_pattern("*"),
            Some(MacPattern {
                prefix: vec![],
                wildcard: true
            })
        );
        assert_eq!(parse_mac_pattern(""), None);
        assert_eq!(parse_mac_pattern("xx-*"), None);
    }
}
