#!/usr/bin/env python3
"""Pre-populates a calloutd lease database for the lease-count scaling run of scripts/bench.sh.

Usage: populate.py DB LOW_COUNT HIGH_COUNT
Writes LOW_COUNT active leases from 198.18.16.1 up (the scope perfdhcp's clients are served from) and
HIGH_COUNT from 240.0.0.1 up (the reserved 240.0.0.0/12 scope of scripts/bench/scopes-scale.txt, held
only as rows: no 240.x address is ever put on an interface or in a packet), in one transaction with
executemany. Lease i (counting the 198.18 leases first) belongs to MAC 0e:be:<i as 4 bytes>, client
identifier 01 + MAC, and expires a day from now.

Prints one line: the MAC and address of the last 198.18 lease (the load check asks the server to offer
that client its address; none when LOW_COUNT is 0), the number of rows written and the seconds taken.
"""

import ipaddress
import sqlite3
import sys
import time

LOW_FIRST = int(ipaddress.IPv4Address("198.18.16.1"))
HIGH_FIRST = int(ipaddress.IPv4Address("240.0.0.1"))
HIGH_LAST = int(ipaddress.IPv4Address("240.15.255.254"))
DHCP_CLIENT_DHCP = 0x30000004

# The schema of crates/engine/src/store.rs (SCHEMA).
SCHEMA = """CREATE TABLE IF NOT EXISTS leases (
    ip INTEGER PRIMARY KEY, client_id BLOB NOT NULL, hw_type INTEGER NOT NULL,
    hw_address BLOB NOT NULL, host_name TEXT, expires INTEGER, client_type INTEGER NOT NULL)"""


def mac_of(index):
    return b"\x0e\xbe" + index.to_bytes(4, "big")


def rows(low, high, expires):
    for i in range(low):
        mac = mac_of(i)
        yield (LOW_FIRST + i, b"\x01" + mac, 1, mac, None, expires, DHCP_CLIENT_DHCP)
    for j in range(high):
        mac = mac_of(low + j)
        yield (HIGH_FIRST + j, b"\x01" + mac, 1, mac, None, expires, DHCP_CLIENT_DHCP)


def main():
    path, low, high = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if HIGH_FIRST + high - 1 > HIGH_LAST:
        sys.exit(f"populate.py: {high} leases do not fit in 240.0.0.1-240.15.255.254")
    started = time.monotonic()
    conn = sqlite3.connect(path)
    # calloutd creates its databases with 1 KiB pages (crates/engine/src/store.rs); the page size only
    # takes effect before the first table, so set it here or the run measures 4 KiB pages instead.
    conn.execute("PRAGMA page_size = 1024")
    # A scratch file: no fsync while filling it (calloutd turns on WAL when it opens it).
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(SCHEMA)
    with conn:
        conn.executemany("INSERT INTO leases VALUES (?, ?, ?, ?, ?, ?, ?)",
                         rows(low, high, int(time.time()) + 86400))
    conn.close()
    elapsed = time.monotonic() - started
    if low:
        last = low - 1
        probe = (":".join(f"{b:02x}" for b in mac_of(last)), str(ipaddress.IPv4Address(LOW_FIRST + last)))
    else:
        probe = ("none", "none")
    print(probe[0], probe[1], low + high, f"{elapsed:.2f}")


if __name__ == "__main__":
    main()
