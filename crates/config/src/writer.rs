//! Export-DhcpServer XML writer: the model in the shape `Import-DhcpServer` and [`crate::read_xml`] read.
//!
//! Only what Export-DhcpServer carries is written: the netsh-only server settings (audit log, database
//! paths and intervals) have no place in that format and are left out.

use std::fmt::Write as _;

/// XML-escapes text; a CR becomes `&#13;` since a literal one would be read back as a line feed.
fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).replace('\r', "&#13;")
}

use crate::model::{
    Class, ClassKind, ExclusionRange, FilterList, Filters, OptionDefinition, OptionElement,
    OptionType, OptionValue, Policy, PolicyCondition, Reservation, Scope, ScopeState, ScopeType,
    ServerConfig,
};
use crate::text::{dashed_hex, format_timespan};

/// Indenting XML builder over a String (writing to a String cannot fail).
struct Out {
    buf: String,
    depth: usize,
}

impl Out {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.buf.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        let _ = writeln!(self.buf, "<{name}>");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        let _ = writeln!(self.buf, "</{name}>");
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        if text.is_empty() {
            let _ = writeln!(self.buf, "<{name} />");
        } else {
            let _ = writeln!(self.buf, "<{name}>{}</{name}>", escape(text));
        }
    }

    fn opt_leaf(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(name, t);
        }
    }

    /// `<section>` holding one `<item>` per entry, each filled by `write`; nothing when `items` is empty.
    fn list<T>(
        &mut self,
        section: &str,
        item: &str,
        items: &[T],
        mut write: impl FnMut(&mut Out, &T),
    ) {
        if items.is_empty() {
            return;
        }
        self.open(section);
        for entry in items {
            self.open(item);
            write(self, entry);
            self.close(item);
        }
        self.close(section);
    }
}

/// One option element as the export writes it (and the scope report shows it): numbers in decimal,
/// bytes as `0x` + lower-case hex.
pub(crate) fn element_text(e: &OptionElement) -> String {
    match e {
        OptionElement::Byte(v) => v.to_string(),
        OptionElement::Word(v) => v.to_string(),
        OptionElement::DWord(v) => v.to_string(),
        OptionElement::DWordDWord(v) => v.to_string(),
        OptionElement::IPv4Address(a) => a.to_string(),
        OptionElement::IPv6Address(a) => a.to_string(),
        OptionElement::String(s) => s.clone(),
        OptionElement::Binary(b) | OptionElement::Encapsulated(b) => hex0x(b),
    }
}

fn hex0x(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn type_name(kind: OptionType) -> &'static str {
    match kind {
        OptionType::Byte => "Byte",
        OptionType::Word => "Word",
        OptionType::DWord => "DWord",
        OptionType::DWordDWord => "DWordDWord",
        OptionType::IPv4Address => "IPv4Address",
        OptionType::IPv6Address => "IPv6Address",
        OptionType::String => "String",
        OptionType::BinaryData => "BinaryData",
        OptionType::EncapsulatedData => "EncapsulatedData",
    }
}

fn scope_type(kind: ScopeType) -> &'static str {
    match kind {
        ScopeType::Dhcp => "Dhcp",
        ScopeType::Bootp => "Bootp",
        ScopeType::Both => "Both",
    }
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn option_values(out: &mut Out, values: &[OptionValue]) {
    out.list("OptionValues", "OptionValue", values, |out, v| {
        out.leaf("OptionId", &v.option_id.to_string());
        for e in &v.value {
            out.indent();
            // Values are written unindented inside their element: blanks in a string are data.
            let text = element_text(e);
            if text.is_empty() {
                out.buf.push_str("<Value></Value>\n");
            } else {
                let _ = writeln!(out.buf, "<Value>{}</Value>", escape(&text));
            }
        }
        out.opt_leaf("VendorClass", v.vendor_class.as_deref());
        out.opt_leaf("UserClass", v.user_class.as_deref());
    });
}

fn ranges(out: &mut Out, list: &str, ranges: &[ExclusionRange]) {
    out.list(list, "IPRange", ranges, |out, r| {
        out.leaf("StartRange", &r.start_range.to_string());
        out.leaf("EndRange", &r.end_range.to_string());
    });
}

fn policies(out: &mut Out, policies: &[Policy]) {
    out.list("Policies", "Policy", policies, policy);
}

fn policy(out: &mut Out, p: &Policy) {
    out.leaf("Name", &p.name);
    out.leaf("ProcessingOrder", &p.processing_order.to_string());
    out.leaf("Enabled", bool_text(p.enabled));
    out.leaf(
        "Condition",
        match p.condition {
            PolicyCondition::And => "AND",
            PolicyCondition::Or => "OR",
        },
    );
    out.leaf("Description", &p.description);
    if let Some(d) = p.lease_duration {
        out.leaf("LeaseDuration", &format_timespan(Some(d)));
    }
    for c in &p.criteria {
        let name = c.field.export_name();
        out.open(name);
        out.leaf("Value", if c.equal { "EQ" } else { "NE" });
        for v in &c.values {
            out.leaf("Value", v);
        }
        out.close(name);
    }
    ranges(out, "IPRanges", &p.ip_ranges);
    option_values(out, &p.option_values);
}

fn class(out: &mut Out, c: &Class) {
    out.leaf("Name", &c.name);
    out.leaf(
        "Type",
        if c.kind == ClassKind::User {
            "User"
        } else {
            "Vendor"
        },
    );
    out.leaf("Data", &hex0x(&c.data));
    out.leaf("Description", &c.description);
}

fn definition(out: &mut Out, d: &OptionDefinition) {
    out.leaf("Name", &d.name);
    out.leaf("OptionId", &d.option_id.to_string());
    out.leaf("Type", type_name(d.kind));
    out.leaf("MultiValued", bool_text(d.multi_valued));
    for e in &d.default_value {
        out.leaf("DefaultValue", &element_text(e));
    }
    out.leaf("Description", &d.description);
    out.opt_leaf("VendorClass", d.vendor_class.as_deref());
}

fn filters(out: &mut Out, f: &Filters) {
    if !(f.allow_enabled || f.deny_enabled || !f.filters.is_empty()) {
        return;
    }
    out.open("Filters");
    out.leaf("Allow", bool_text(f.allow_enabled));
    out.leaf("Deny", bool_text(f.deny_enabled));
    for filter in &f.filters {
        out.open("Filter");
        out.leaf(
            "List",
            if filter.list == FilterList::Allow {
                "Allow"
            } else {
                "Deny"
            },
        );
        let mut mac = dashed_hex(&filter.mac.prefix).to_ascii_uppercase();
        if filter.mac.wildcard {
            mac.push_str(if mac.is_empty() { "*" } else { "-*" });
        }
        out.leaf("MacAddress", &mac);
        out.leaf("Description", &filter.description);
        out.close("Filter");
    }
    out.close("Filters");
}

fn scope(out: &mut Out, s: &Scope) {
    out.leaf("ScopeId", &s.scope_id.to_string());
    out.leaf("Name", &s.name);
    out.leaf("SubnetMask", &s.subnet_mask.to_string());
    out.leaf("StartRange", &s.start_range.to_string());
    out.leaf("EndRange", &s.end_range.to_string());
    out.leaf("LeaseDuration", &format_timespan(s.lease_duration));
    out.leaf(
        "State",
        if s.state == ScopeState::Active {
            "Active"
        } else {
            "Inactive"
        },
    );
    out.leaf("Type", scope_type(s.kind));
    if let Some(m) = s.max_bootp_clients {
        out.leaf("MaxBootpClients", &m.to_string());
    }
    out.leaf("Delay", &s.delay.as_millis().to_string());
    out.leaf("Description", &s.description);
    out.opt_leaf("SuperScopeName", s.superscope_name.as_deref());
    out.leaf("ActivatePolicies", bool_text(s.activate_policies));
    ranges(out, "ExclusionRanges", &s.exclusion_ranges);
    out.list("Reservations", "Reservation", &s.reservations, reservation);
    policies(out, &s.policies);
    option_values(out, &s.option_values);
    out.list("Leases", "Lease", &s.leases, |out, l| {
        out.leaf("IPAddress", &l.ip_address.to_string());
        out.leaf("ScopeId", &s.scope_id.to_string());
        out.leaf("ClientId", &dashed_hex(&l.client_id));
        out.opt_leaf("HostName", l.host_name.as_deref());
        out.leaf("AddressState", &l.address_state);
        out.opt_leaf("LeaseExpiryTime", l.lease_expiry_time.as_deref());
    });
}

fn reservation(out: &mut Out, r: &Reservation) {
    out.leaf("Name", &r.name);
    out.leaf("IPAddress", &r.ip_address.to_string());
    out.leaf("ClientId", &dashed_hex(&r.client_id));
    out.leaf("Type", scope_type(r.kind));
    out.leaf("Description", &r.description);
    option_values(out, &r.option_values);
}

/// The configuration as Export-DhcpServer XML (UTF-8), readable by [`crate::read_xml`] and `Import-DhcpServer`.
pub fn write_xml(config: &ServerConfig) -> String {
    let mut out = Out {
        buf: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"),
        depth: 0,
    };
    out.open("DHCPServer");
    out.leaf("MajorVersion", "10");
    out.leaf("MinorVersion", "0");
    out.open("IPv4");
    out.leaf(
        "ConflictDetectionAttempts",
        &config.settings.conflict_detection_attempts.to_string(),
    );
    out.list("Classes", "Class", &config.classes, class);
    out.list(
        "OptionDefinitions",
        "OptionDefinition",
        &config.option_definitions,
        definition,
    );
    option_values(&mut out, &config.option_values);
    filters(&mut out, &config.filters);
    policies(&mut out, &config.policies);
    out.list("Scopes", "Scope", &config.scopes, scope);
    out.close("IPv4");
    out.close("DHCPServer");
    out.buf
}
