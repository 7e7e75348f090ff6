#!/usr/bin/env bash
# The peer: Pacemaker + Corosync + ocf:heartbeat:VirtualDomain restarting one guest after its
# node dies, on this machine. Root only; Debian packages pacemaker corosync resource-agents.
#
#   pacemaker.sh run BASEDIR TOKEN_MS TRIALS   prints one line per trial: `trial N: S ms`
#   pacemaker.sh stop BASEDIR
#
# Two cluster nodes pcmk1/pcmk2, each corosync + pacemakerd in its own network, mount, UTS and
# PID namespace (private /run, /dev/shm, /etc/corosync, /var/lib/pacemaker, ...), linked by a
# veth pair. Their hypervisors are the two libvirtd blades of tests/support/libvirt-blades.sh
# (each node sees its blade's socket as /run/libvirt/libvirt-sock, so VirtualDomain uses
# qemu:///system). The guest is the blades' tiny TCG guest (64 MiB, diskless).
# STONITH is disabled: no fence agent runs, so the figures are a lower bound for Pacemaker
# (its documented fencing with fence_ipmilan adds about 4.4 s at default settings).
# A trial: SIGKILL the PID namespace of the node running the guest (corosync, pacemaker) and the
# guest's QEMU, then poll the other blade until the guest runs there; then the node is started again.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
LB=tests/support/libvirt-blades.sh
cmd=$1 B=$2
BL=$B/blades

node_pid() { cat "$B/n$1/init.pid" 2>/dev/null; }

start_node() {
    local n=$1 N=$B/n$1
    rm -rf "$N/run" "$N/shm" "$N/var/lib/pacemaker" "$N/var/log"
    mkdir -p "$N/run" "$N/shm" "$N/var/lib/pacemaker"/{cib,pengine,blackbox,cores} "$N/var/lib/corosync" \
             "$N/var/log/pacemaker" "$N/var/log/cluster"
    chown -R hacluster:haclient "$N/var/lib/pacemaker" "$N/var/log/pacemaker"
    local blade; blade=$([ "$n" = 1 ] && echo a || echo b)
    setsid ip netns exec "pcmk$n" unshare -m -u -p --fork --mount-proc --propagation private \
        bash -c '
        N=$1; n=$2; sock=$3
        hostname "pcmk$n"
        mount -t tmpfs tmpfs /run; mkdir -p /run/libvirt /run/resource-agents /run/crm
        mount --bind "$sock" /run/libvirt
        mount -t tmpfs tmpfs /dev/shm
        mount --bind "$N/etc/corosync" /etc/corosync
        mount --bind "$N/var/lib/pacemaker" /var/lib/pacemaker
        mount --bind "$N/var/lib/corosync" /var/lib/corosync
        mount --bind "$N/var/log/pacemaker" /var/log/pacemaker
        mount --bind "$N/var/log/cluster" /var/log/cluster
        corosync -f > "$N/corosync.out" 2>&1 &
        sleep 1
        exec pacemakerd -f > "$N/pacemakerd.out" 2>&1' node "$N" "$n" "$BL/$blade/sock" &
    local p=$! c=
    for _ in $(seq 50); do c=$(pgrep -P "$p" | head -1 || true); [ -n "$c" ] && break; sleep 0.1; done
    echo "$c" > "$N/init.pid"
}

in_node() { local n=$1; shift; nsenter -t "$(node_pid "$n")" -a -- "$@"; }

kill_node() {
    local n=$1 p; p=$(node_pid "$n")
    # every process of the node's PID namespace
    for q in $(ps -e -o pid= -o pidns= | awk -v ns="$(readlink /proc/"$p"/ns/pid | tr -dc 0-9)" '$2==ns {print $1}'); do
        kill -9 "$q" 2>/dev/null || true
    done
    kill -9 "$p" 2>/dev/null || true
}

case $cmd in
run)
    TOKEN=$3 TRIALS=$4
    trap 'bash "$0" stop "$B"' EXIT
    mkdir -p "$B" /var/log/cluster /var/log/pacemaker /var/lib/corosync
    bash $LB start "$BL" >/dev/null
    bash $LB guest-xml pmvm > "$B/pmvm.xml"
    ip netns add pcmk1; ip netns add pcmk2
    ip link add pcmkv1 type veth peer name pcmkv2
    ip link set pcmkv1 netns pcmk1; ip link set pcmkv2 netns pcmk2
    ip -n pcmk1 addr add 10.99.0.1/24 dev pcmkv1; ip -n pcmk2 addr add 10.99.0.2/24 dev pcmkv2
    for n in 1 2; do ip -n pcmk$n link set lo up; ip -n pcmk$n link set pcmkv$n up; done
    for n in 1 2; do
        mkdir -p "$B/n$n/etc/corosync"
        cp -a /etc/corosync/. "$B/n$n/etc/corosync/"
        cat > "$B/n$n/etc/corosync/corosync.conf" <<CONF
totem {
    version: 2
    cluster_name: peer
    transport: knet
    token: $TOKEN
    crypto_cipher: none
    crypto_hash: none
}
nodelist {
    node {
        ring0_addr: 10.99.0.1
        name: pcmk1
        nodeid: 1
    }
    node {
        ring0_addr: 10.99.0.2
        name: pcmk2
        nodeid: 2
    }
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
logging {
    to_logfile: yes
    logfile: /var/log/cluster/corosync.log
    to_syslog: no
    timestamp: on
}
CONF
        start_node $n
    done
    for i in $(seq 60); do
        in_node 1 crm_mon -1 2>/dev/null | grep -q "Online: \[ pcmk1 pcmk2 \]" && break
        sleep 1
    done
    in_node 1 crm_mon -1 | grep Online
    in_node 1 crm_attribute -t crm_config -n stonith-enabled -v false
    in_node 1 crm_attribute -t rsc_defaults -n resource-stickiness -v 1000
    in_node 1 cibadmin -C -o resources -X "<primitive id='vm' class='ocf' provider='heartbeat' type='VirtualDomain'><instance_attributes id='vm-ia'><nvpair id='vm-cfg' name='config' value='$B/pmvm.xml'/><nvpair id='vm-hv' name='hypervisor' value='qemu:///system'/></instance_attributes><operations><op id='vm-mon' name='monitor' interval='10s' timeout='30s'/><op id='vm-start' name='start' interval='0' timeout='60s'/><op id='vm-stop' name='stop' interval='0' timeout='60s'/></operations></primitive>"
    UA=$(bash $LB uri "$BL" a) UB=$(bash $LB uri "$BL" b)
    for trial in $(seq "$TRIALS"); do
        # wait for the guest on one blade
        on=
        for i in $(seq 600); do
            if virsh -c "$UA" domstate pmvm 2>/dev/null | grep -q running; then on=1; break; fi
            if virsh -c "$UB" domstate pmvm 2>/dev/null | grep -q running; then on=2; break; fi
            sleep 0.1
        done
        [ -n "$on" ] || { echo "guest never started"; exit 1; }
        other=$((3 - on)); UO=$([ $other = 1 ] && echo "$UA" || echo "$UB")
        blade=$([ $on = 1 ] && echo a || echo b)
        sleep 12   # settle (monitor ran, cluster idle)
        t0=$(date +%s%N)
        kill_node $on
        bash $LB kill-qemu "$BL" $blade pmvm >/dev/null 2>&1 || true
        until virsh -c "$UO" domstate pmvm 2>/dev/null | grep -q running; do
            [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 120000 ] || { echo "trial $trial: not restarted in 120 s"; exit 1; }
        done
        t1=$(date +%s%N)
        echo "trial $trial: $(( (t1 - t0) / 1000000 )) ms"
        [ "$trial" = "$TRIALS" ] && break
        start_node $on
        sleep 20
    done
    ;;
stop)
    for n in 1 2; do [ -n "$(node_pid $n)" ] && kill_node $n 2>/dev/null || true; done
    bash $LB stop "$BL" >/dev/null 2>&1 || true
    ip netns del pcmk1 2>/dev/null || true; ip netns del pcmk2 2>/dev/null || true
    ;;
esac
