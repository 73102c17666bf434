//! calloutd: a DHCPv4 server that runs Microsoft DHCP Server callout DLLs.

fn main() {
    println!("calloutd");
}
