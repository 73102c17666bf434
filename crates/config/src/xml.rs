//! Reader for Export-DhcpServer XML (docs/config.md section 4).
//!
//! The text (already decoded from UTF-8 or UTF-16) is parsed by quick-xml into a small element tree with
//! line numbers, then walked into raw records. Positions carry the line and the element path, e.g.
//! `/DHCPServer/IPv4/Scopes/Scope[2]/StartRange`. Unknown elements are warnings.

use std::net::Ipv4Addr;
use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::diag::{Diags, Pos};
use crate::model::{
    Class, ClassKind, Filter, FilterList, ImportedLease, OptionType, PolicyCondition,
    PolicyCriterion, PolicyField, ScopeState, ScopeType,
};
use crate::raw::{
    At, RawConfig, RawDefinition, RawOptionValue, RawPolicy, RawRange, RawReservation, RawScope,
};
use crate::text::{parse_bool, parse_hex, parse_i64, parse_timespan, parse_u64};

/// Deeper nesting than this is not an export (and would make the tree costly to walk).
const MAX_DEPTH: usize = 64;
/// More elements than this is not a plausible export; bounded memory for hostile input.
const MAX_NODES: usize = 4_000_000;

/// One element: name, line of its start tag, text content, children.
#[derive(Debug, Default)]
struct Node {
    name: String,
    line: u32,
    text: String,
    children: Vec<Node>,
}

/// Byte offset to 1-based line.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }
    fn line_of(&self, offset: u64) -> u32 {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let n = self.0.partition_point(|&nl| nl < offset);
        u32::try_from(n + 1).unwrap_or(u32::MAX)
    }
}

/// Parses XML text into a tree, or gives the line and reason it is not well-formed.
fn parse_tree(text: &str) -> Result<Node, (u32, String)> {
    let lines = Lines::new(text);
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            let at = reader.error_position();
            // quick-xml's syntax errors are all "... not found before end of input".
            let hint = if matches!(e, quick_xml::Error::Syntax(s) if s != quick_xml::errors::SyntaxError::InvalidBangMarkup) {
                " (file truncated?)"
            } else {
                ""
            };
            (lines.line_of(at), format!("malformed XML: {e}{hint}"))
        })?;
        let line = lines.line_of(before + 1);
        let open =
            |name: &str, stack: &mut Vec<Node>, nodes: &mut usize| -> Result<(), (u32, String)> {
                *nodes += 1;
                if stack.len() >= MAX_DEPTH || *nodes > MAX_NODES {
                    return Err((
                        line,
                        "XML nested too deeply or too many elements".to_string(),
                    ));
                }
                if stack.is_empty() && root.is_some() {
                    return Err((line, format!("second root element <{name}>")));
                }
                stack.push(Node {
                    name: name.to_string(),
                    line,
                    ..Node::default()
                });
                Ok(())
            };
        match event {
            Event::Start(e) => open(e.name().as_ref(), &mut stack, &mut nodes)?,
            Event::Empty(e) => {
                open(e.name().as_ref(), &mut stack, &mut nodes)?;
                close(&mut stack, &mut root);
            }
            Event::End(_) => close(&mut stack, &mut root),
            Event::Text(t) => push_text(&mut stack, &t.xml10_content(), line)?,
            Event::CData(t) => push_text(&mut stack, &t.xml10_content(), line)?,
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                let resolved = if let Ok(Some(c)) = r.resolve_char_ref() {
                    c.to_string()
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                    s.to_string()
                } else {
                    return Err((line, format!("unknown entity &{name};")));
                };
                push_text(&mut stack, &resolved, line)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err((
            lines.line_of(text.len() as u64),
            format!(
                "file ends inside <{}> (opened on line {}): truncated?",
                open.name, open.line
            ),
        ));
    }
    root.ok_or((1, "no XML element found".to_string()))
}

fn close(stack: &mut Vec<Node>, root: &mut Option<Node>) {
    if let Some(node) = stack.pop() {
        match stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None => *root = Some(node),
        }
    }
}

fn push_text(stack: &mut [Node], text: &str, line: u32) -> Result<(), (u32, String)> {
    match stack.last_mut() {
        Some(node) => {
            node.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err((line, "text outside the root element".to_string())),
    }
}

/// A node with its path, for positions.
#[derive(Clone, Copy)]
struct Cur<'n, 'p> {
    node: &'n Node,
    path: &'p str,
}

impl<'n> Cur<'n, '_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.node.line,
            path: Some(self.path.to_string()),
        }
    }

    /// The first child called `name` (case-insensitive).
    fn child(&self, name: &str) -> Option<&'n Node> {
        self.node
            .children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    fn text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_string())
    }

    /// Free text (names, descriptions) exactly as written: Windows keeps trailing blanks in names.
    fn free_text(&self, name: &str) -> String {
        self.child(name).map(|c| c.text.clone()).unwrap_or_default()
    }

    /// Non-empty text of child `name`.
    fn some_text(&self, name: &str) -> Option<String> {
        self.text(name).filter(|t| !t.is_empty())
    }

    /// Children called `name`, each with its path `parent/name[i]`.
    fn each(&self, name: &str) -> Vec<(String, &'n Node)> {
        self.node
            .children
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case(name))
            .enumerate()
            .map(|(i, c)| (format!("{}/{}[{}]", self.path, c.name, i + 1), c))
            .collect()
    }

    /// The first child called `name` with its path `parent/name`.
    fn section(&self, name: &str) -> Option<(String, &'n Node)> {
        self.child(name).map(|n| (self.child_path(n), n))
    }

    /// The path of child node `c`: `parent/name`.
    fn child_path(&self, c: &Node) -> String {
        format!("{}/{}", self.path, c.name)
    }

    /// The position of child node `c`: its line and `parent/name`.
    fn pos_of(&self, c: &Node) -> Pos {
        Pos {
            line: c.line,
            path: Some(self.child_path(c)),
        }
    }

    /// The position of child `name`, or of this node when it has none.
    fn child_pos(&self, name: &str) -> Pos {
        match self.child(name) {
            Some(c) => self.pos_of(c),
            None => self.pos(),
        }
    }
}

/// The words a keyword element accepts (compared after the reader folds the case) and how a wrong one is
/// reported: "{what} `{word}` is not {expected}".
struct Keywords<T: 'static> {
    words: &'static [(&'static str, T)],
    rule: &'static str,
    what: &'static str,
    expected: &'static str,
}

const CLASS_TYPES: Keywords<ClassKind> = Keywords {
    words: &[("user", ClassKind::User), ("vendor", ClassKind::Vendor)],
    rule: "bad-class-type",
    what: "class type",
    expected: "User or Vendor",
};

const FILTER_LISTS: Keywords<FilterList> = Keywords {
    words: &[("allow", FilterList::Allow), ("deny", FilterList::Deny)],
    rule: "bad-filter",
    what: "filter list",
    expected: "Allow or Deny",
};

const CONDITIONS: Keywords<PolicyCondition> = Keywords {
    words: &[("OR", PolicyCondition::Or), ("AND", PolicyCondition::And)],
    rule: "bad-condition",
    what: "policy condition",
    expected: "AND or OR",
};

const SCOPE_STATES: Keywords<ScopeState> = Keywords {
    words: &[
        ("active", ScopeState::Active),
        ("inactive", ScopeState::Inactive),
    ],
    rule: "bad-state",
    what: "state",
    expected: "Active or Inactive",
};

const SCOPE_TYPES: Keywords<ScopeType> = Keywords {
    words: &[
        ("dhcp", ScopeType::Dhcp),
        ("bootp", ScopeType::Bootp),
        ("both", ScopeType::Both),
    ],
    rule: "bad-type",
    what: "type",
    expected: "Dhcp, Bootp or Both",
};

struct Walker<'d> {
    diags: &'d mut Diags,
}

type Res<T> = Result<T, ()>;

impl Walker<'_> {
    /// Warns about children not in `known` (and not in `ignored`, which are accepted silently).
    fn check_children(&mut self, cur: Cur<'_, '_>, known: &[&str], ignored: &[&str]) {
        for c in &cur.node.children {
            let ok = known
                .iter()
                .chain(ignored)
                .any(|k| k.eq_ignore_ascii_case(&c.name));
            if !ok {
                self.diags.warning(
                    &cur.pos_of(c),
                    "unknown-element",
                    format!("unknown element <{}> ignored", c.name),
                );
            }
        }
    }

    /// Reports child `name` of `cur` (or `cur` itself when the child is absent).
    fn bad_child(&mut self, cur: Cur<'_, '_>, name: &str, rule: &'static str, message: String) {
        self.diags.error(&cur.child_pos(name), rule, message);
    }

    /// `word` (already case-folded) of child `name` looked up in `keywords`; an unknown one is reported.
    fn keyword<T: Copy>(
        &mut self,
        cur: Cur<'_, '_>,
        name: &str,
        word: &str,
        keywords: &Keywords<T>,
    ) -> Res<T> {
        match keywords.words.iter().find(|(w, _)| *w == word) {
            Some((_, value)) => Ok(*value),
            None => {
                let message = format!("{} `{word}` is not {}", keywords.what, keywords.expected);
                self.bad_child(cur, name, keywords.rule, message);
                Err(())
            }
        }
    }

    /// Optional keyword child `name`, case-folded by `fold`; `None` when absent or empty.
    fn opt_keyword<T: Copy>(
        &mut self,
        cur: Cur<'_, '_>,
        name: &str,
        fold: fn(&str) -> String,
        keywords: &Keywords<T>,
    ) -> Res<Option<T>> {
        match cur.some_text(name) {
            None => Ok(None),
            Some(word) => self.keyword(cur, name, &fold(&word), keywords).map(Some),
        }
    }

    /// Reports child `name` (holding `text`) as not hex: "{label} `{text}` is not hex".
    fn not_hex(&mut self, cur: Cur<'_, '_>, name: &str, label: &str, text: &str) {
        self.bad_child(cur, name, "bad-hex", format!("{label} `{text}` is not hex"));
    }

    fn required(&mut self, cur: Cur<'_, '_>, name: &str) -> Res<String> {
        match cur.some_text(name) {
            Some(t) => Ok(t),
            None => {
                self.diags.error(
                    &cur.pos(),
                    "missing-element",
                    format!("<{}> has no <{name}>", cur.node.name),
                );
                Err(())
            }
        }
    }

    fn ip(&mut self, cur: Cur<'_, '_>, name: &str) -> Res<Ipv4Addr> {
        let t = self.required(cur, name)?;
        t.parse().map_err(|_| {
            self.bad_child(
                cur,
                name,
                "bad-address",
                format!("<{name}> `{t}` is not an IPv4 address"),
            );
        })
    }

    /// Child `name` read by `parse`, `None` when absent or empty; else reported as "is not `what`".
    fn opt_parsed<T>(
        &mut self,
        cur: Cur<'_, '_>,
        name: &str,
        parse: fn(&str) -> Option<T>,
        rule: &'static str,
        what: &str,
    ) -> Res<Option<T>> {
        match cur.some_text(name) {
            None => Ok(None),
            Some(t) => parse(&t).map(Some).ok_or_else(|| {
                self.bad_child(cur, name, rule, format!("<{name}> `{t}` is not {what}"));
            }),
        }
    }

    fn opt_u64(&mut self, cur: Cur<'_, '_>, name: &str) -> Res<Option<u64>> {
        self.opt_parsed(cur, name, parse_u64, "bad-number", "a number")
    }

    fn opt_u32(&mut self, cur: Cur<'_, '_>, name: &str) -> Res<Option<u32>> {
        match self.opt_u64(cur, name)? {
            None => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                self.bad_child(
                    cur,
                    name,
                    "bad-number",
                    format!("<{name}> {n} is too large"),
                );
            }),
        }
    }

    fn opt_bool(&mut self, cur: Cur<'_, '_>, name: &str) -> Res<Option<bool>> {
        self.opt_parsed(cur, name, parse_bool, "bad-bool", "true or false")
    }

    fn opt_timespan(&mut self, cur: Cur<'_, '_>, name: &str) -> Res<Option<Option<Duration>>> {
        self.opt_parsed(
            cur,
            name,
            parse_timespan,
            "bad-timespan",
            "a TimeSpan like 8.00:00:00",
        )
    }

    fn server(&mut self, root: &Node, raw: &mut RawConfig) {
        let path = format!("/{}", root.name);
        let cur = Cur {
            node: root,
            path: &path,
        };
        self.check_children(cur, &["MajorVersion", "MinorVersion", "IPv4", "IPv6"], &[]);
        if cur.child("IPv6").is_some() {
            self.diags.warning(
                &cur.child_pos("IPv6"),
                "ignored-v6",
                "the IPv6 section is ignored (calloutd serves DHCPv4 only)",
            );
        }
        let Some((v4_path, v4)) = cur.section("IPv4") else {
            self.diags
                .warning(&cur.pos(), "no-ipv4", "no <IPv4> section: no scopes");
            return;
        };
        let v4 = Cur {
            node: v4,
            path: &v4_path,
        };
        self.check_children(
            v4,
            &[
                "ConflictDetectionAttempts",
                "Classes",
                "OptionDefinitions",
                "OptionValues",
                "Filters",
                "Policies",
                "Scopes",
            ],
            &[
                "NapEnabled",
                "NpsUnreachableAction",
                "ActivatePolicies",
                "SuperScopes",
                "MulticastScopes",
            ],
        );
        if let Ok(Some(n)) = self.opt_u64(v4, "ConflictDetectionAttempts") {
            match u8::try_from(n).ok().filter(|n| *n <= 5) {
                Some(n) => raw.settings.conflict_detection_attempts = n,
                None => self.bad_child(
                    v4,
                    "ConflictDetectionAttempts",
                    "bad-number",
                    format!("ConflictDetectionAttempts {n} is not 0-5"),
                ),
            }
        }
        raw.classes = self.items(v4, "Classes", "Class", Self::class);
        raw.definitions = self.items(
            v4,
            "OptionDefinitions",
            "OptionDefinition",
            Self::definition,
        );
        raw.option_values = self.option_values(v4);
        if let Some((p, filters)) = v4.section("Filters") {
            let cur = Cur {
                node: filters,
                path: &p,
            };
            self.check_children(cur, &["Allow", "Deny", "Filter"], &[]);
            raw.filters_allow = self.opt_bool(cur, "Allow").ok().flatten().unwrap_or(false);
            raw.filters_deny = self.opt_bool(cur, "Deny").ok().flatten().unwrap_or(false);
            raw.filters = self.each_item(cur, "Filter", Self::filter);
        }
        raw.policies = self.policies(v4);
        raw.scopes = self.items(v4, "Scopes", "Scope", Self::scope);
    }

    /// The `item` elements of list section `section` under `cur` (e.g. `Scopes/Scope*`), each read by
    /// `read`; other children of the section are warned about, items that fail were reported and are left out.
    fn items<T>(
        &mut self,
        cur: Cur<'_, '_>,
        section: &str,
        item: &str,
        read: impl FnMut(&mut Self, Cur<'_, '_>) -> Res<T>,
    ) -> Vec<T> {
        let Some((path, node)) = cur.section(section) else {
            return Vec::new();
        };
        let list = Cur { node, path: &path };
        self.check_children(list, &[item], &[]);
        self.each_item(list, item, read)
    }

    /// The `item` children of `list`, each read by `read`; those that fail are left out.
    fn each_item<T>(
        &mut self,
        list: Cur<'_, '_>,
        item: &str,
        mut read: impl FnMut(&mut Self, Cur<'_, '_>) -> Res<T>,
    ) -> Vec<T> {
        list.each(item)
            .into_iter()
            .filter_map(|(path, node)| read(self, Cur { node, path: &path }).ok())
            .collect()
    }

    fn class(&mut self, cur: Cur<'_, '_>) -> Res<At<Class>> {
        self.check_children(
            cur,
            &["Name", "Type", "Data", "Description"],
            &["AsciiData"],
        );
        // Class names are references: compared trimmed, as netsh's are.
        let name = self.required(cur, "Name")?;
        let word = self.required(cur, "Type")?.to_ascii_lowercase();
        let kind = self.keyword(cur, "Type", &word, &CLASS_TYPES)?;
        let data_text = self.required(cur, "Data")?;
        let data = parse_hex(&data_text)
            .ok_or_else(|| self.not_hex(cur, "Data", "class data", &data_text))?;
        Ok(At::new(
            cur.pos(),
            Class {
                name,
                kind,
                data,
                description: cur.free_text("Description"),
            },
        ))
    }

    fn option_type(&mut self, cur: Cur<'_, '_>) -> Res<OptionType> {
        let t = self.required(cur, "Type")?;
        Ok(match t.to_ascii_lowercase().as_str() {
            "byte" => OptionType::Byte,
            "word" => OptionType::Word,
            "dword" => OptionType::DWord,
            "dworddword" => OptionType::DWordDWord,
            "ipv4address" | "ipaddress" => OptionType::IPv4Address,
            "ipv6address" => OptionType::IPv6Address,
            "string" => OptionType::String,
            "binarydata" | "binary" => OptionType::BinaryData,
            "encapsulateddata" | "encapsulated" => OptionType::EncapsulatedData,
            _ => {
                self.bad_child(
                    cur,
                    "Type",
                    "bad-type",
                    format!("unknown option type `{t}`"),
                );
                return Err(());
            }
        })
    }

    fn option_id(&mut self, cur: Cur<'_, '_>) -> Res<i64> {
        let t = self.required(cur, "OptionId")?;
        parse_i64(&t).ok_or_else(|| {
            self.bad_child(
                cur,
                "OptionId",
                "bad-number",
                format!("OptionId `{t}` is not a number"),
            );
        })
    }

    fn definition(&mut self, cur: Cur<'_, '_>) -> Res<At<RawDefinition>> {
        self.check_children(
            cur,
            &[
                "Name",
                "OptionId",
                "Type",
                "MultiValued",
                "DefaultValue",
                "Description",
                "VendorClass",
            ],
            &[],
        );
        let option_id = self.option_id(cur)?;
        let kind = self.option_type(cur)?;
        Ok(At::new(
            cur.pos(),
            RawDefinition {
                option_id,
                name: cur.free_text("Name"),
                kind,
                multi_valued: self.opt_bool(cur, "MultiValued")?.unwrap_or(false),
                vendor_class: cur.some_text("VendorClass"),
                description: cur.free_text("Description"),
                default_value: values_of(cur.node, "DefaultValue"),
            },
        ))
    }

    /// The `OptionValues/OptionValue*` under `cur`.
    fn option_values(&mut self, cur: Cur<'_, '_>) -> Vec<At<RawOptionValue>> {
        self.items(cur, "OptionValues", "OptionValue", Self::option_value)
    }

    fn option_value(&mut self, cur: Cur<'_, '_>) -> Res<At<RawOptionValue>> {
        self.check_children(
            cur,
            &["OptionId", "Value", "VendorClass", "UserClass"],
            &["Name", "Type", "PolicyName", "ScopeId", "ReservedIP"],
        );
        let option_id = self.option_id(cur)?;
        Ok(At::new(
            cur.pos(),
            RawOptionValue {
                option_id,
                declared_type: None,
                values: values_of(cur.node, "Value"),
                vendor_class: cur.some_text("VendorClass"),
                user_class: cur.some_text("UserClass"),
            },
        ))
    }

    fn filter(&mut self, cur: Cur<'_, '_>) -> Res<At<Filter>> {
        self.check_children(cur, &["List", "MacAddress", "Description"], &[]);
        let word = self.required(cur, "List")?.to_ascii_lowercase();
        let list = self.keyword(cur, "List", &word, &FILTER_LISTS)?;
        let text = self.required(cur, "MacAddress")?;
        let mac = crate::netsh::parse_mac_pattern(&text).ok_or_else(|| {
            self.bad_child(
                cur,
                "MacAddress",
                "bad-mac",
                format!("`{text}` is not a MAC pattern"),
            );
        })?;
        Ok(At::new(
            cur.pos(),
            Filter {
                list,
                mac,
                description: cur.free_text("Description"),
            },
        ))
    }

    /// The `IPRange` items of section `list` under `cur`.
    fn ranges(&mut self, cur: Cur<'_, '_>, list: &str) -> Vec<At<RawRange>> {
        self.items(cur, list, "IPRange", Self::range)
    }

    fn range(&mut self, cur: Cur<'_, '_>) -> Res<At<RawRange>> {
        self.check_children(cur, &["StartRange", "EndRange"], &[]);
        // Both ends are read (and reported) before either failure counts.
        let (start, end) = (self.ip(cur, "StartRange"), self.ip(cur, "EndRange"));
        Ok(At::new(
            cur.pos(),
            RawRange {
                start: start?,
                end: end?,
            },
        ))
    }

    fn policies(&mut self, cur: Cur<'_, '_>) -> Vec<At<RawPolicy>> {
        self.items(cur, "Policies", "Policy", Self::policy)
    }

    fn policy(&mut self, cur: Cur<'_, '_>) -> Res<At<RawPolicy>> {
        let mut known: Vec<&str> = vec![
            "Name",
            "ProcessingOrder",
            "Enabled",
            "Condition",
            "Description",
            "LeaseDuration",
            "OptionValues",
            "IPRanges",
        ];
        known.extend(PolicyField::ALL.map(PolicyField::export_name));
        self.check_children(cur, &known, &["ScopeId"]);
        self.required(cur, "Name")?;
        let name = cur.free_text("Name");
        let condition = self
            .opt_keyword(cur, "Condition", str::to_ascii_uppercase, &CONDITIONS)?
            .unwrap_or(PolicyCondition::Or);
        // Each criterion element holds an operator (EQ|NE) followed by its values; an element may hold
        // several operator groups.
        let mut criteria = Vec::new();
        for child in &cur.node.children {
            let Some(field) = PolicyField::ALL
                .into_iter()
                .find(|f| f.export_name().eq_ignore_ascii_case(&child.name))
            else {
                continue;
            };
            let pos = cur.pos_of(child);
            let mut items = values_of(child, "Value");
            if items.is_empty() {
                items = child
                    .text
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            let mut current: Option<PolicyCriterion> = None;
            for item in items {
                let op = item.to_ascii_uppercase();
                if op == "EQ" || op == "NE" {
                    criteria.extend(current.take().map(|c| At::new(pos.clone(), c)));
                    current = Some(PolicyCriterion {
                        field,
                        equal: op == "EQ",
                        values: Vec::new(),
                    });
                } else if let Some(c) = current.as_mut() {
                    c.values.push(item);
                } else {
                    self.diags.error(
                        &pos,
                        "bad-criterion",
                        format!("policy `{name}`: {} must start with EQ or NE", child.name),
                    );
                    return Err(());
                }
            }
            match current {
                Some(c) if !c.values.is_empty() => criteria.push(At::new(pos, c)),
                _ => {
                    self.diags.error(
                        &pos,
                        "bad-criterion",
                        format!("policy `{name}`: {} has no value", child.name),
                    );
                    return Err(());
                }
            }
        }
        Ok(At::new(
            cur.pos(),
            RawPolicy {
                processing_order: self.opt_u32(cur, "ProcessingOrder")?.unwrap_or(1),
                enabled: self.opt_bool(cur, "Enabled")?.unwrap_or(true),
                condition,
                criteria,
                ip_ranges: self.ranges(cur, "IPRanges"),
                option_values: self.option_values(cur),
                lease_duration: self.opt_timespan(cur, "LeaseDuration")?,
                description: cur.free_text("Description"),
                name,
            },
        ))
    }

    fn scope_type(&mut self, cur: Cur<'_, '_>) -> Res<Option<ScopeType>> {
        self.opt_keyword(cur, "Type", str::to_ascii_lowercase, &SCOPE_TYPES)
    }

    fn scope(&mut self, cur: Cur<'_, '_>) -> Res<At<RawScope>> {
        self.check_children(
            cur,
            &[
                "ScopeId",
                "Name",
                "SubnetMask",
                "StartRange",
                "EndRange",
                "LeaseDuration",
                "State",
                "Type",
                "MaxBootpClients",
                "Delay",
                "Description",
                "SuperScopeName",
                "ActivatePolicies",
                "ExclusionRanges",
                "Reservations",
                "Policies",
                "OptionValues",
                "Leases",
            ],
            &["NapEnable", "NapProfile"],
        );
        let scope_id = self.ip(cur, "ScopeId")?;
        let mask = self.ip(cur, "SubnetMask")?;
        let mut s = RawScope::new(scope_id, mask);
        s.name = cur.free_text("Name");
        s.description = cur.free_text("Description");
        if let (Ok(start), Ok(end)) = (self.ip(cur, "StartRange"), self.ip(cur, "EndRange")) {
            s.range = Some(At::new(
                cur.child_pos("StartRange"),
                RawRange { start, end },
            ));
        }
        s.lease_duration = self.opt_timespan(cur, "LeaseDuration")?;
        s.lease_pos = cur.child_pos("LeaseDuration");
        s.state = self
            .opt_keyword(cur, "State", str::to_ascii_lowercase, &SCOPE_STATES)?
            .unwrap_or(ScopeState::Active);
        s.kind = self.scope_type(cur)?.unwrap_or(ScopeType::Dhcp);
        s.max_bootp_clients = self.opt_u32(cur, "MaxBootpClients")?;
        s.delay = Duration::from_millis(
            self.opt_u64(cur, "Delay")?
                .unwrap_or(0)
                .min(u64::from(u32::MAX)),
        );
        s.superscope_name = cur.some_text("SuperScopeName");
        s.activate_policies = self.opt_bool(cur, "ActivatePolicies")?.unwrap_or(true);
        s.exclusions = self.ranges(cur, "ExclusionRanges");
        s.reservations = self.items(cur, "Reservations", "Reservation", Self::reservation);
        s.policies = self.policies(cur);
        s.option_values = self.option_values(cur);
        s.leases = self.items(cur, "Leases", "Lease", Self::lease);
        Ok(At::new(cur.pos(), s))
    }

    fn reservation(&mut self, cur: Cur<'_, '_>) -> Res<At<RawReservation>> {
        self.check_children(
            cur,
            &[
                "Name",
                "IPAddress",
                "ClientId",
                "Type",
                "Description",
                "OptionValues",
            ],
            &["ScopeId"],
        );
        let ip_address = self.ip(cur, "IPAddress")?;
        let id_text = self.required(cur, "ClientId")?;
        let client_id = parse_hex(&id_text)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| self.not_hex(cur, "ClientId", "ClientId", &id_text))?;
        Ok(At::new(
            cur.pos(),
            RawReservation {
                name: cur.free_text("Name"),
                ip_address,
                client_id,
                kind: self.scope_type(cur)?.unwrap_or(ScopeType::Both),
                description: cur.free_text("Description"),
                option_values: self.option_values(cur),
            },
        ))
    }

    fn lease(&mut self, cur: Cur<'_, '_>) -> Res<At<ImportedLease>> {
        self.check_children(
            cur,
            &[
                "IPAddress",
                "ScopeId",
                "ClientId",
                "HostName",
                "AddressState",
                "LeaseExpiryTime",
            ],
            &[
                "ClientType",
                "Description",
                "DnsRR",
                "DnsRegistration",
                "NapCapable",
                "NapStatus",
                "ProbationEnds",
                "PolicyName",
                "ServerIP",
            ],
        );
        let ip_address = self.ip(cur, "IPAddress")?;
        let id_text = cur.text("ClientId").unwrap_or_default();
        let client_id = parse_hex(&id_text)
            .ok_or_else(|| self.not_hex(cur, "ClientId", "ClientId", &id_text))?;
        Ok(At::new(
            cur.pos(),
            ImportedLease {
                ip_address,
                client_id,
                host_name: cur.some_text("HostName"),
                address_state: cur.text("AddressState").unwrap_or_default(),
                lease_expiry_time: cur.some_text("LeaseExpiryTime"),
            },
        ))
    }
}

/// The texts of the repeated `name` children (untrimmed for strings: a value may hold blanks).
fn values_of(node: &Node, name: &str) -> Vec<String> {
    node.children
        .iter()
        .filter(|c| c.name.eq_ignore_ascii_case(name))
        .map(|c| c.text.clone())
        .collect()
}

/// Reads Export-DhcpServer XML text into raw records; problems go to `diags`.
pub(crate) fn read(text: &str, diags: &mut Diags) -> RawConfig {
    let mut raw = RawConfig::default();
    let root = match parse_tree(text) {
        Ok(root) => root,
        Err((line, msg)) => {
            diags.error(&Pos::line(line), "xml-syntax", msg);
            return raw;
        }
    };
    if !root.name.eq_ignore_ascii_case("DHCPServer") {
        diags.error(
            &Pos {
                line: root.line,
                path: Some(format!("/{}", root.name)),
            },
            "not-export",
            format!(
                "root element is <{}>, not <DHCPServer>: not an Export-DhcpServer file",
                root.name
            ),
        );
        return raw;
    }
    Walker { diags }.server(&root, &mut raw);
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_lines_entities_and_errors() {
        let t = parse_tree("<?xml version=\"1.0\"?>\n<A>\n  <B>x &amp; &#65;</B>\n  <C/>\n</A>\n")
            .unwrap();
        assert_eq!(t.name, "A");
        assert_eq!(t.children[0].line, 3);
        assert_eq!(t.children[0].text, "x & A");
        assert_eq!(t.children[1].line, 4);
        assert!(parse_tree("<A><B></A>").is_err());
        let (line, msg) = parse_tree("<A>\n<B>\n").unwrap_err();
        assert!(msg.contains("truncated"), "{msg}");
        assert!(line >= 2);
        assert!(parse_tree("<A>&bogus;</A>").is_err());
        assert!(parse_tree("<A/><B/>").is_err());
        assert!(parse_tree("").is_err());
        let deep = "<a>".repeat(100);
        assert!(parse_tree(&deep).is_err());
    }
}
