//! Writer round trips over everything the XML carries, and a bounded mutation run over both readers
//! (the plain-test counterpart of the cargo-fuzz targets in `fuzz/`).

use calloutd_config::*;

const RICH: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<DHCPServer>
  <MajorVersion>10</MajorVersion>
  <MinorVersion>0</MinorVersion>
  <IPv4>
    <ConflictDetectionAttempts>1</ConflictDetectionAttempts>
    <Classes>
      <Class><Name>Phones</Name><Type>Vendor</Type><Data>0x50484f4e45</Data><Description>IP phones &amp; more</Description></Class>
      <Class><Name>Kiosk</Name><Type>User</Type><Data>0x4b494f534b</Data><Description /></Class>
    </Classes>
    <OptionDefinitions>
      <OptionDefinition><Name>Big</Name><OptionId>200</OptionId><Type>DWordDWord</Type><MultiValued>false</MultiValued><Description /></OptionDefinition>
      <OptionDefinition><Name>V6</Name><OptionId>201</OptionId><Type>IPv6Address</Type><MultiValued>true</MultiValued><Description /></OptionDefinition>
      <OptionDefinition><Name>Words</Name><OptionId>202</OptionId><Type>Word</Type><MultiValued>true</MultiValued><DefaultValue>1</DefaultValue><DefaultValue>2</DefaultValue><Description /></OptionDefinition>
      <OptionDefinition><Name>Enc</Name><OptionId>203</OptionId><Type>EncapsulatedData</Type><MultiValued>false</MultiValued><Description /></OptionDefinition>
      <OptionDefinition><Name>Phone server</Name><OptionId>1</OptionId><Type>String</Type><MultiValued>false</MultiValued><Description /><VendorClass>Phones</VendorClass></OptionDefinition>
    </OptionDefinitions>
    <OptionValues>
      <OptionValue><OptionId>200</OptionId><Value>18446744073709551615</Value></OptionValue>
      <OptionValue><OptionId>201</OptionId><Value>2001:db8::1</Value><Value>fe80::2</Value></OptionValue>
      <OptionValue><OptionId>203</OptionId><Value>0x0102</Value><Value>0x03</Value></OptionValue>
      <OptionValue><OptionId>43</OptionId><Value>0x01020304</Value></OptionValue>
      <OptionValue><OptionId>1</OptionId><Value>  call.example &lt;x&gt;  </Value><VendorClass>Phones</VendorClass><UserClass>Kiosk</UserClass></OptionValue>
      <OptionValue><OptionId>2</OptionId><Value>-3600</Value></OptionValue>
    </OptionValues>
    <Filters>
      <Allow>true</Allow>
      <Deny>false</Deny>
      <Filter><List>Allow</List><MacAddress>00-15-5D-*</MacAddress><Description>Hyper-V</Description></Filter>
      <Filter><List>Deny</List><MacAddress>00-15-5D-00-00-01</MacAddress><Description /></Filter>
    </Filters>
    <Policies>
      <Policy>
        <Name>Phones everywhere</Name><ProcessingOrder>1</ProcessingOrder><Enabled>true</Enabled><Condition>OR</Condition>
        <Description>server policy</Description>
        <VendorClass><Value>EQ</Value><Value>Phones</Value></VendorClass>
        <OptionValues><OptionValue><OptionId>42</OptionId><Value>198.18.0.123</Value></OptionValue></OptionValues>
      </Policy>
    </Policies>
    <Scopes>
      <Scope>
        <ScopeId>198.18.4.0</ScopeId><Name>everything</Name><SubnetMask>255.255.252.0</SubnetMask>
        <StartRange>198.18.4.1</StartRange><EndRange>198.18.7.254</EndRange>
        <LeaseDuration>10675199.02:48:05.4775807</LeaseDuration>
        <State>Inactive</State><Type>Bootp</Type><MaxBootpClients>4294967295</MaxBootpClients><Delay>250</Delay>
        <Description>all fields</Description><SuperScopeName>Super</SuperScopeName><ActivatePolicies>false</ActivatePolicies>
        <Reservations>
          <Reservation><Name>r</Name><IPAddress>198.18.5.5</IPAddress><ClientId>01-02-03</ClientId><Type>Bootp</Type><Description /></Reservation>
        </Reservations>
        <Policies>
          <Policy>
            <Name>Kiosks</Name><ProcessingOrder>2</ProcessingOrder><Enabled>false</Enabled><Condition>AND</Condition>
            <Description /><LeaseDuration>01:00:00</LeaseDuration>
            <MacAddress><Value>EQ</Value><Value>00-15-5D*</Value><Value>NE</Value><Value>00-15-5D-00*</Value></MacAddress>
            <UserClass><Value>EQ</Value><Value>Kiosk</Value></UserClass>
            <Fqdn><Value>EQ</Value><Value>*.kiosk.example</Value></Fqdn>
            <RelayAgent>EQ,0103*</RelayAgent>
            <IPRanges><IPRange><StartRange>198.18.6.1</StartRange><EndRange>198.18.6.100</EndRange></IPRange></IPRanges>
            <OptionValues><OptionValue><OptionId>15</OptionId><Value>kiosk.example</Value></OptionValue></OptionValues>
          </Policy>
        </Policies>
        <Leases>
          <Lease><IPAddress>198.18.4.9</IPAddress><ScopeId>198.18.4.0</ScopeId><ClientId>00-15-5d-00-00-09</ClientId><HostName>pc9</HostName><AddressState>Active</AddressState><LeaseExpiryTime>2026-12-01T10:00:00</LeaseExpiryTime></Lease>
          <Lease><IPAddress>198.18.4.10</IPAddress><ScopeId>198.18.4.0</ScopeId><ClientId>00-15-5d-00-00-0a</ClientId><AddressState>ActiveReservation</AddressState></Lease>
        </Leases>
      </Scope>
    </Scopes>
  </IPv4>
  <IPv6><Scopes /></IPv6>
</DHCPServer>
"#;

#[test]
fn everything_the_xml_carries_round_trips() {
    let loaded = read_xml(RICH.as_bytes(), "rich.xml").unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert_eq!(loaded.warnings[0].rule, "ignored-v6");
    let c = &loaded.config;
    let s = &c.scopes[0];
    assert_eq!(s.lease_duration, None);
    assert_eq!(
        (s.state, s.kind, s.max_bootp_clients),
        (ScopeState::Inactive, ScopeType::Bootp, Some(u32::MAX))
    );
    assert_eq!(s.delay, std::time::Duration::from_millis(250));
    assert_eq!(s.superscope_name.as_deref(), Some("Super"));
    assert!(!s.activate_policies);
    assert_eq!(s.leases.len(), 2);
    let p = &s.policies[0];
    assert_eq!(p.criteria.len(), 5);
    assert_eq!((p.criteria[0].equal, p.criteria[1].equal), (true, false));
    assert_eq!(p.criteria[4].values, ["0103*"]);
    assert_eq!(p.lease_duration, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(
        c.option_values[0].value,
        [OptionElement::DWordDWord(u64::MAX)]
    );
    assert_eq!(
        c.option_values[2].value,
        [OptionElement::Encapsulated(vec![1, 2, 3])]
    );
    assert_eq!(
        c.option_values[4].value,
        [OptionElement::String("  call.example <x>  ".into())]
    );
    assert_eq!(
        c.option_values[5].value,
        [OptionElement::DWord(0u32.wrapping_sub(3600))]
    );
    assert_eq!(c.classes[0].description, "IP phones & more");
    assert!(!c.filters.allows(&[0x00, 0x15, 0x5d, 0, 0, 1]) || !c.filters.deny_enabled);
    assert!(c.filters.allows(&[0x00, 0x15, 0x5d, 9, 9, 9]));
    assert!(!c.filters.allows(&[0x00, 0x16, 0x5d, 9, 9, 9]));

    let written = write_xml(c);
    let again = read_xml(written.as_bytes(), "again.xml").unwrap();
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(&again.config, c);
    assert_eq!(write_xml(&again.config), written);
}

/// A small xorshift generator: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len());
        match rng.below(5) {
            0 => out[at] = rng.next() as u8,
            1 => {
                out.remove(at);
            }
            2 => out.insert(at, b"<>\"=\\ -*0x9:.\r\n"[rng.below(15)]),
            3 => {
                // Duplicate a slice (repeats elements and lines).
                let len = rng.below(200).min(out.len() - at);
                let piece = out[at..at + len].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, piece);
            }
            _ => out.truncate(at),
        }
        if out.is_empty() {
            break;
        }
    }
    out
}

#[test]
fn mutated_inputs_never_panic_and_round_trip() {
    let seeds: [&[u8]; 3] = [
        RICH.as_bytes(),
        include_bytes!("../../../fixtures/config/lab.xml"),
        include_bytes!("../../../fixtures/config/lab-netsh.txt"),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut loaded_count = 0;
    for i in 0..1500 {
        let seed = seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed);
        let results = [read_xml(&input, "m.xml"), read_netsh(&input, "m.txt")];
        for loaded in results.into_iter().flatten() {
            loaded_count += 1;
            let written = write_xml(&loaded.config);
            let again = read_xml(written.as_bytes(), "w.xml")
                .unwrap_or_else(|e| panic!("case {i}: written XML does not load: {e}"));
            let mut expected = loaded.config.clone();
            expected.settings = ServerSettings {
                conflict_detection_attempts: expected.settings.conflict_detection_attempts,
                ..Default::default()
            };
            assert_eq!(again.config, expected, "case {i}");
            let _ = scope_report(&loaded.config);
        }
    }
    assert!(
        loaded_count > 10,
        "mutations too destructive to test anything: {loaded_count}"
    );
}
