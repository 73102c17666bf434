# Sourced by scripts/bench.sh and scripts/soak.sh: two network namespaces joined by a veth pair, the
# server side "$srv_ns" ("$srv_if", $srv_ip/16) and the load generator "$gen_ns" ("$gen_if",
# $gen_ip/16). The caller sets those six variables, with addresses from 198.18.0.0/15 only: the
# host's own interfaces are never touched.

# Creates both namespaces and the link, and waits until the generator can reach the server.
netns_pair_up() {
    ip netns add "$srv_ns"
    ip netns add "$gen_ns"
    ip link add "$srv_if" netns "$srv_ns" type veth peer name "$gen_if" netns "$gen_ns"
    ip -n "$srv_ns" link set lo up
    ip -n "$gen_ns" link set lo up
    ip -n "$srv_ns" addr add "$srv_ip/16" dev "$srv_if"
    ip -n "$gen_ns" addr add "$gen_ip/16" dev "$gen_if"
    ip -n "$srv_ns" link set "$srv_if" up
    ip -n "$gen_ns" link set "$gen_if" up
    for _ in $(seq 50); do
        ip netns exec "$gen_ns" ping -c1 -W1 "$srv_ip" >/dev/null 2>&1 && break
        sleep 0.1
    done
}

# Stops every process in both namespaces (TERM, up to 5 s, then KILL) and deletes them. Never fails.
netns_pair_down() {
    local ns pid
    for ns in "$srv_ns" "$gen_ns"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    done
    for _ in $(seq 50); do
        [ -z "$(ip netns pids "$srv_ns" 2>/dev/null)$(ip netns pids "$gen_ns" 2>/dev/null)" ] && break
        sleep 0.1
    done
    for ns in "$srv_ns" "$gen_ns"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}
