#!/usr/bin/env bash
# The peer: Pacemaker + Corosync + ocf:heartbeat:VirtualDomain + STONITH with fence_ipmilan,
# restarting one guest after its node dies, on this machine. Root only; Debian packages
# pacemaker corosync resource-agents fence-agents openipmi ipmitool tini (installed if missing).
#
#   pacemaker.sh run BASEDIR PROFILE TRIALS   one line per trial: `trial N: S ms; fenced F ms`
#   pacemaker.sh stop BASEDIR                 stops everything `run` started under BASEDIR
#   pacemaker.sh power BASEDIR N get|set ...  node N's power (the BMCs' chassis_control hook)
#   pacemaker.sh boot BASEDIR N               node N's delayed boot (started by `power ... set power 1`)
#
# PROFILE:
#   default   corosync token 3000 ms (consensus its default, 3600), stonith-timeout 60 s, fence
#             action reboot (Pacemaker's default), fence_ipmilan defaults (power_wait 2 s)
#   fast      token 1000 ms, consensus 1200 ms, stonith-timeout 15 s, otherwise default
#   fastest   fast + pcmk_reboot_action=off (the fence powers the node off) + power_wait 0
#
# Two cluster nodes pcmk1/pcmk2, each corosync + pacemakerd under tini (the first process of
# the node's PID namespace, with a `sleep infinity` to keep it alive) in its own network
# (namespace pcmkN), mount, UTS and PID namespace (private /run, /dev/shm, /etc/corosync,
# /var/lib/pacemaker, ...), linked by a veth pair (10.99.0.1, 10.99.0.2). Their hypervisors
# are the two libvirtd blades of tests/support/libvirt-blades.sh (node N sees blade a|b's
# socket as /run/libvirt/libvirt-sock, so VirtualDomain uses qemu:///system). The guest is
# the blades' tiny TCG guest (64 MiB, diskless), resource-stickiness 1000.
#
# Fencing: the network namespace pcmkbmc holds the "BMCs", one OpenIPMI ipmi_sim per node
# (RMCP+ on 10.98.0.N:623, user admin/secret) on a bridge; each node reaches both over its
# own veth into that bridge (node N is 10.98.0.1N). Each node has one stonith resource
# fence-pcmkN (fence_ipmilan lanplus=1 cipher=3 against BMC N, pcmk_host_list=pcmkN), kept
# off the node it fences by a -INFINITY location constraint. A BMC's chassis_control hook
# is `pacemaker.sh power BASEDIR N`: "set power 0" SIGKILLs every process of node N's PID
# namespace and the guest's QEMU on node N's blade and appends `off N <date +%s%N>` to
# BASEDIR/bmc/power.log; "set power 1" appends `on N <ns>` and boots the node after a
# simulated 20 s boot delay in the background (a fenced node that came back at once would
# rejoin before the fence completed and be given the guest again); "get power" reports 1
# while the node's namespace lives or its boot is pending.
#
# A trial: wait until both nodes are Online, the controller is idle, the guest and both
# fence devices run and the guest runs on exactly one blade, still so 2 s later; SIGKILL
# every process of the PID namespace of the node running the guest except its init (the OS
# dies, the power stays on, as after a kernel crash: the BMC still reports power on and the
# fence has to cut it) and the guest's QEMU; poll the other blade (`virsh domstate`, ~25 ms
# per call) until the guest runs there. S is failure ->
# guest running on the survivor, F is failure -> the BMC hook's power-off of that node
# (`-` if none was recorded: then the guest ran without a fence, which stderr reports as a
# safety violation). Each trial also checks the survivor's fence history (one more
# successful fence of the failed node) and that libvirt started the guest's QEMU on the
# survivor after the power-off. After a reboot fence the node comes back through its BMC's
# "on"; after an off fence (fastest) the script powers it on through the BMC
# (`ipmitool chassis power on`). Diagnostics go to stderr; stdout carries only trial lines.
# The namespace names (pcmk1, pcmk2, pcmkbmc) are fixed: one run per machine at a time. `run`
# first stops what an earlier run left under BASEDIR; `stop` SIGKILLs every process in those
# three namespaces and the blades of BASEDIR, then deletes the namespaces.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
SELF=$PWD/bench/peer/pacemaker.sh
LB=tests/support/libvirt-blades.sh
usage() { sed -n '2,/^set -euo/p' "$SELF" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 B=$(readlink -m "$2")
BL=$B/blades
BMC=$B/bmc
BMC_NS=pcmkbmc
BMC_USER=admin BMC_PASS=secret
BOOT_DELAY=20
GUEST=pmvm

log() { echo "pacemaker.sh: $*" >&2; }
blade_of() { [ "$1" = 1 ] && echo a || echo b; }
bmc_ip() { echo "10.98.0.$1"; }

node_pid() { cat "$B/n$1/init.pid" 2>/dev/null || true; }

# true if node N's namespace init (tini) lives: the recorded PID is alive, not a zombie, runs
# tini and is in the PID namespace recorded at its start (never a reused PID)
node_alive() {
    local p st
    p=$(node_pid "$1")
    [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
    st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || return 1
    [ "$st" != Z ] || return 1
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = tini ] || return 1
    [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$(cat "$B/n$1/init.pidns" 2>/dev/null)" ]
}

# PID, parent PID and command name of every live (not zombie) process in node N's PID namespace
ns_procs() {
    local ns
    ns=$(tr -dc 0-9 < "$B/n$1/init.pidns" 2>/dev/null) || return 0
    [ -n "$ns" ] || return 0
    ps -e -o pid= -o ppid= -o pidns= -o stat= -o comm= | awk -v ns="$ns" '$3==ns && $4 !~ /^Z/ {print $1, $2, $5}'
}

start_node() {
    local n=$1 N=$B/n$1
    rm -rf "$N/run" "$N/shm" "$N/var/lib/pacemaker" "$N/var/log" "$N/init.pid" "$N/init.pidns"
    mkdir -p "$N/run" "$N/shm" "$N/var/lib/pacemaker"/{cib,pengine,blackbox,cores} "$N/var/lib/corosync" \
             "$N/var/log/pacemaker" "$N/var/log/cluster"
    chown -R hacluster:haclient "$N/var/lib/pacemaker" "$N/var/log/pacemaker"
    # shellcheck disable=SC2016
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
        pacemakerd -f > "$N/pacemakerd.out" 2>&1 &
        exec tini -- sleep infinity' node "$N" "$n" "$BL/$(blade_of "$n")/sock" \
        < /dev/null > "$N/init.out" 2>&1 &
    local p=$! c=
    disown $p
    for _ in $(seq 50); do c=$(pgrep -P "$p" | head -1 || true); [ -n "$c" ] && break; sleep 0.1; done
    [ -n "$c" ] || { log "node $n: namespace init did not start"; return 1; }
    readlink "/proc/$c/ns/pid" > "$N/init.pidns"
    echo "$c" > "$N/init.pid"
}

in_node() { local n=$1; shift; nsenter -t "$(node_pid "$n")" -a -- "$@"; }

# the node's power cut: SIGKILL every process of its PID namespace (init last)
kill_node() {
    local n=$1 p pid _ppid _comm
    node_alive "$n" || return 0
    p=$(node_pid "$n")
    while read -r pid _ppid _comm; do
        [ "$pid" = "$p" ] || kill -9 "$pid" 2>/dev/null || true
    done < <(ns_procs "$n")
    kill -9 "$p" 2>/dev/null || true
    for _ in $(seq 100); do node_alive "$n" || return 0; sleep 0.02; done
    log "node $n: init $p survived SIGKILL"
}

# the node's OS dies, its power stays on: SIGKILL every process of its PID namespace except
# init (tini) and init's `sleep infinity` (tini would exit with it)
crash_node() {
    local n=$1 p pid ppid comm left
    p=$(node_pid "$n")
    for _ in $(seq 20); do
        left=0
        while read -r pid ppid comm; do
            [ "$pid" = "$p" ] && continue
            [ "$ppid" = "$p" ] && [ "$comm" = sleep ] && continue
            kill -9 "$pid" 2>/dev/null || true
            left=1
        done < <(ns_procs "$n")
        [ $left = 0 ] && return 0
        sleep 0.02
    done
    log "node $n: processes survive the crash"
}

# PID of node N's pending boot, if one is pending
booting() {
    local f=$BMC/boot$1.pid p
    p=$(cat "$f" 2>/dev/null) || return 1
    [ -n "$p" ] && grep -qa "pacemaker.sh" "/proc/$p/cmdline" 2>/dev/null || return 1
    echo "$p"
}

power_state() { if node_alive "$1" || booting "$1" >/dev/null; then echo 1; else echo 0; fi; }

power_off() {
    local n=$1 was=0 p
    if p=$(booting "$n"); then kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; was=1; fi
    rm -f "$BMC/boot$n.pid"
    if node_alive "$n"; then kill_node "$n"; was=1; fi
    bash $LB kill-qemu "$BL" "$(blade_of "$n")" "$GUEST" >/dev/null 2>&1 || true
    if [ $was = 1 ]; then
        echo "off $n $(date +%s%N)" >> "$BMC/power.log"
        log "BMC $n: power off (node $n killed)"
    fi
}

power_on() {
    local n=$1
    [ "$(power_state "$n")" = 0 ] || return 0
    setsid bash "$SELF" boot "$B" "$n" < /dev/null >> "$BMC/boot$n.log" 2>&1 &
    echo $! > "$BMC/boot$n.pid"
    disown $!
    echo "on $n $(date +%s%N)" >> "$BMC/power.log"
    log "BMC $n: power on (node $n boots in ${BOOT_DELAY} s)"
}

ipmi() { # ipmi NETNS N ARGS...: ipmitool against BMC N from a network namespace
    local ns=$1 n=$2; shift 2
    ip netns exec "$ns" ipmitool -I lanplus -C 3 -H "$(bmc_ip "$n")" -U $BMC_USER -P $BMC_PASS "$@"
}

# controller state of the cluster as seen from node Q: 0 when both nodes are Online, the DC is
# idle and both fence devices and the guest are started
settled_via() {
    local q=$1 out dc
    out=$(in_node "$q" crm_mon -1 2>/dev/null) || return 1
    grep -q "Online: \[ pcmk1 pcmk2 \]" <<< "$out" || return 1
    [ "$(grep -cE '(fence-pcmk[12]|vm).*Started' <<< "$out")" = 3 ] || return 1
    dc=$(sed -n 's/.*Current DC: \([^ ]*\) .*/\1/p' <<< "$out")
    [ -n "$dc" ] || return 1
    in_node "$q" crmadmin -S "$dc" 2>/dev/null | grep -q S_IDLE
}

wait_settled() {
    local deadline=$((SECONDS + $1)) q
    while [ $SECONDS -lt $deadline ]; do
        for q in 1 2; do
            node_alive "$q" || continue
            settled_via "$q" && return 0
            break
        done
        sleep 1
    done
    return 1
}

# the node(s) whose blade runs the guest: 1, 2, "12" or nothing
guest_blades() {
    local r=
    if virsh -c "$1" domstate $GUEST 2>/dev/null | grep -q running; then r=1; fi
    if virsh -c "$2" domstate $GUEST 2>/dev/null | grep -q running; then r=${r}2; fi
    echo "$r"
}

# successful fences of node T in the fence history as node Q sees it
fence_count() {
    in_node "$1" stonith_admin --history "pcmk$2" 2>/dev/null | grep -c "of pcmk$2 successful" || true
}

# wall-clock time (ns) of libvirt's last QEMU start of the guest on blade X (its qemu log)
qemu_started_ns() {
    local l
    l=$(grep 'starting up' "$BL/$1/var/log/libvirt/qemu/$GUEST.log" 2>/dev/null | tail -1 | cut -d' ' -f1,2)
    [ -n "$l" ] || return 1
    date -d "${l%:}" +%s%N
}

install_missing() {
    local p need=() own_policy= rc=0
    for p in pacemaker corosync resource-agents pacemaker-cli-utils fence-agents openipmi ipmitool tini; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    [ ${#need[@]} = 0 ] && return 0
    log "installing ${need[*]}"
    # package scripts may not start the daemons
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends \
        "${need[@]}" >&2 || rc=$?
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || { log "could not install ${need[*]}"; exit 1; }
}

case $cmd in
run)
    [ $# = 4 ] || usage
    PROFILE=$3 TRIALS=$4
    [[ "$TRIALS" =~ ^[1-9][0-9]*$ ]] || usage
    # fence device options beyond ip/credentials/lanplus/cipher/host list
    DEV_OPTS=()
    case $PROFILE in
        default) TOKEN=3000 CONSENSUS= STONITH_TIMEOUT=60s ;;
        fast) TOKEN=1000 CONSENSUS=1200 STONITH_TIMEOUT=15s ;;
        fastest) TOKEN=1000 CONSENSUS=1200 STONITH_TIMEOUT=15s DEV_OPTS=(power_wait=0 pcmk_reboot_action=off) ;;
        *) usage ;;
    esac
    [ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
    install_missing
    # what an earlier run left behind
    bash "$SELF" stop "$B" >/dev/null 2>&1 || true
    trap 'bash "$SELF" stop "$B" >&2' EXIT
    mkdir -p "$B" /var/log/cluster /var/log/pacemaker /var/lib/corosync
    rm -rf --one-file-system "${B:?}/n1" "${B:?}/n2" "${BMC:?}"
    mkdir -p "$BMC"
    : > "$BMC/power.log"
    bash $LB start "$BL" >/dev/null
    bash $LB guest-xml $GUEST > "$B/$GUEST.xml"

    # cluster link
    ip netns add pcmk1; ip netns add pcmk2
    ip -n pcmk1 link add pcmkv1 type veth peer name pcmkv2 netns pcmk2
    ip -n pcmk1 addr add 10.99.0.1/24 dev pcmkv1; ip -n pcmk2 addr add 10.99.0.2/24 dev pcmkv2
    for n in 1 2; do ip -n pcmk$n link set lo up; ip -n pcmk$n link set pcmkv$n up; done
    # BMC network: a bridge in pcmkbmc carrying both BMC addresses, one veth per node into it
    ip netns add $BMC_NS
    ip -n $BMC_NS link set lo up
    ip -n $BMC_NS link add pcmkbr type bridge
    for n in 1 2; do ip -n $BMC_NS addr add "$(bmc_ip $n)/24" dev pcmkbr; done
    ip -n $BMC_NS link set pcmkbr up
    for n in 1 2; do
        ip -n pcmk$n link add pcmkb$n type veth peer name pcmkbp$n netns $BMC_NS
        ip -n pcmk$n addr add "10.98.0.1$n/24" dev pcmkb$n
        ip -n pcmk$n link set pcmkb$n up
        ip -n $BMC_NS link set pcmkbp$n master pcmkbr
        ip -n $BMC_NS link set pcmkbp$n up
    done

    # the BMCs
    for n in 1 2; do
        D=$BMC/$n
        mkdir -p "$D/state"
        cat > "$D/bmc.emu" <<EMU
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
EMU
        cat > "$D/lan.conf" <<CONF
name "pcmkbmc$n"
set_working_mc 0x20
  startlan 1
    addr $(bmc_ip $n) 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcde$n
  endlan
  chassis_control "bash $SELF power $B $n"
  user 1 true "" "test" user 10 none md2 md5 straight
  user 2 true "$BMC_USER" "$BMC_PASS" admin 10 none md2 md5 straight
CONF
        nsenter --net=/run/netns/$BMC_NS -- setsid ipmi_sim -c "$D/lan.conf" -f "$D/bmc.emu" -s "$D/state" -n \
            < /dev/null > "$D/ipmi_sim.log" 2>&1 &
        echo $! > "$D/ipmi_sim.pid"
        disown $!
    done
    for n in 1 2; do
        for m in 1 2; do
            ok=
            for _ in $(seq 50); do
                if ipmi pcmk$m $n chassis power status 2>/dev/null | grep -q "Chassis Power is off"; then ok=1; break; fi
                sleep 0.2
            done
            [ -n "$ok" ] || { log "BMC $n does not answer node $m (log: $BMC/$n/ipmi_sim.log)"; exit 1; }
        done
    done

    for n in 1 2; do
        mkdir -p "$B/n$n/etc/corosync"
        cp -a /etc/corosync/. "$B/n$n/etc/corosync/"
        cat > "$B/n$n/etc/corosync/corosync.conf" <<CONF
totem {
    version: 2
    cluster_name: peer
    transport: knet
    token: $TOKEN${CONSENSUS:+
    consensus: $CONSENSUS}
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
    in_node 1 crm_mon -1 | grep Online >&2
    [ "$(power_state 1)$(power_state 2)" = 11 ] || { log "the BMCs do not see both nodes powered"; exit 1; }
    in_node 1 crm_attribute -t crm_config -n stonith-enabled -v true
    in_node 1 crm_attribute -t crm_config -n stonith-timeout -v $STONITH_TIMEOUT
    in_node 1 crm_attribute -t rsc_defaults -n resource-stickiness -v 1000
    for n in 1 2; do
        nv=
        for kv in "ip=$(bmc_ip $n)" "username=$BMC_USER" "password=$BMC_PASS" lanplus=1 cipher=3 \
                  "pcmk_host_list=pcmk$n" ${DEV_OPTS[@]+"${DEV_OPTS[@]}"}; do
            nv="$nv<nvpair id='fence-pcmk$n-${kv%%=*}' name='${kv%%=*}' value='${kv#*=}'/>"
        done
        in_node 1 cibadmin -C -o resources -X "<primitive id='fence-pcmk$n' class='stonith' type='fence_ipmilan'><instance_attributes id='fence-pcmk$n-ia'>$nv</instance_attributes><operations><op id='fence-pcmk$n-mon' name='monitor' interval='60s'/></operations></primitive>"
        in_node 1 cibadmin -C -o constraints -X "<rsc_location id='fence-pcmk$n-away' rsc='fence-pcmk$n' node='pcmk$n' score='-INFINITY'/>"
    done
    in_node 1 cibadmin -C -o resources -X "<primitive id='vm' class='ocf' provider='heartbeat' type='VirtualDomain'><instance_attributes id='vm-ia'><nvpair id='vm-cfg' name='config' value='$B/$GUEST.xml'/><nvpair id='vm-hv' name='hypervisor' value='qemu:///system'/></instance_attributes><operations><op id='vm-mon' name='monitor' interval='10s' timeout='30s'/><op id='vm-start' name='start' interval='0' timeout='60s'/><op id='vm-stop' name='stop' interval='0' timeout='60s'/></operations></primitive>"
    UA=$(bash $LB uri "$BL" a) UB=$(bash $LB uri "$BL" b)
    for trial in $(seq "$TRIALS"); do
        # settled, the guest on exactly one blade, and still so 2 s later (the last results are
        # recorded everywhere)
        deadline=$((SECONDS + 240)) on= told=
        while :; do
            [ $SECONDS -lt $deadline ] || { log "trial $trial: the cluster did not settle (both Online, idle, guest and fence devices started, guest on one blade)"; exit 1; }
            wait_settled $((deadline - SECONDS)) || continue
            on=$(guest_blades "$UA" "$UB")
            if [ "$on" = 1 ] || [ "$on" = 2 ]; then
                sleep 2
                wait_settled 1 && [ "$(guest_blades "$UA" "$UB")" = "$on" ] && break
                continue
            fi
            if [ -z "$told" ]; then
                told=1
                log "trial $trial: the cluster looks settled but the guest runs on '${on:-none}' of the blades:"
                for u in "$UA" "$UB"; do virsh -c "$u" list --all >&2 || true; done
                for q in 1 2; do node_alive $q && { in_node $q crm_mon -1 -t >&2 || true; }; done
            fi
            sleep 1
        done
        other=$((3 - on)); UO=$([ $other = 1 ] && echo "$UA" || echo "$UB")
        fences0=$(fence_count $other $on)
        dc=$(in_node $other crm_mon -1 2>/dev/null | sed -n 's/.*Current DC: \([^ ]*\) .*/\1/p' || true)
        t0=$(date +%s%N)
        crash_node $on
        bash $LB kill-qemu "$BL" "$(blade_of $on)" $GUEST >/dev/null 2>&1 || true
        until virsh -c "$UO" domstate $GUEST 2>/dev/null | grep -q running; do
            [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 120000 ] || { log "trial $trial: not restarted in 120 s"; exit 1; }
        done
        t1=$(date +%s%N)
        tf=$(awk -v n=$on -v t0="$t0" '$1=="off" && $2==n && $3>t0 {print $3; exit}' "$BMC/power.log")
        if [ -n "$tf" ]; then
            echo "trial $trial: $(( (t1 - t0) / 1000000 )) ms; fenced $(( (tf - t0) / 1000000 )) ms"
        else
            echo "trial $trial: $(( (t1 - t0) / 1000000 )) ms; fenced - ms"
            log "trial $trial: SAFETY VIOLATION: the guest runs on pcmk$other but BMC $on never powered pcmk$on off"
        fi
        fences1=$(fence_count $other $on)
        if [ "$fences1" -le "$fences0" ]; then
            log "trial $trial: SAFETY VIOLATION: pcmk$other's fence history has no new successful fence of pcmk$on ($fences0 -> $fences1)"
        fi
        if ts=$(qemu_started_ns "$(blade_of $other)"); then
            if [ -n "$tf" ] && [ "$ts" -le "$tf" ]; then
                log "trial $trial: SAFETY VIOLATION: the guest's QEMU started on pcmk$other $(( (tf - ts) / 1000000 )) ms before the power-off"
            else
                log "trial $trial: pcmk$on failed$([ "$dc" = pcmk$on ] && echo " (it was the DC)"); fence confirmed ($fences0 -> $fences1 successful in pcmk$other's history); QEMU started $(( (ts - t0) / 1000000 )) ms after the failure${tf:+, $(( (ts - tf) / 1000000 )) ms after the power-off}"
            fi
        else
            log "trial $trial: no QEMU start recorded in blade $(blade_of $other)'s libvirt log"
        fi
        [ "$trial" = "$TRIALS" ] && break
        # an off fence leaves the node off: power it on through its BMC
        if [ "$(power_state $on)" = 0 ]; then
            ipmi pcmk$other $on chassis power on >&2
        fi
    done
    ;;
power)
    # chassis_control hook: power BASEDIR N get PARM... | set PARM VALUE...
    [ $# -ge 4 ] || exit 1
    n=$3 op=$4; shift 4
    case $n in 1|2) ;; *) echo "no node $n"; exit 1 ;; esac
    case $op in
    get)
        for parm in "$@"; do
            case $parm in
                power) echo "power:$(power_state "$n")" ;;
                boot) echo "boot:default" ;;
                *) echo "cannot get $parm"; exit 1 ;;
            esac
        done
        ;;
    set)
        while [ $# -ge 2 ]; do
            parm=$1 val=$2; shift 2
            case $parm in
                power) if [ "$val" = 0 ]; then power_off "$n" >&2; else power_on "$n" >&2; fi ;;
                reset) [ "$val" = 0 ] || { power_off "$n" >&2; power_on "$n" >&2; } ;;
                boot) ;;
                *) echo "cannot set $parm"; exit 1 ;;
            esac
        done
        ;;
    *) echo "unknown operation $op"; exit 1 ;;
    esac
    ;;
boot)
    # the delayed boot of node N (run in the background by its BMC's power on)
    n=$3
    sleep $BOOT_DELAY
    start_node "$n"
    rm -f "$BMC/boot$n.pid"
    log "node $n booted"
    ;;
stop)
    # pending boots and BMCs first (they would start nodes), then the nodes, blades, namespaces
    for n in 1 2; do
        if p=$(booting $n); then kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; fi
        rm -f "$BMC/boot$n.pid"
    done
    for ns in $BMC_NS pcmk1 pcmk2; do
        [ -e /run/netns/$ns ] || continue
        for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    done
    for n in 1 2; do kill_node $n 2>/dev/null || true; done
    bash $LB stop "$BL" >/dev/null 2>&1 || true
    for ns in $BMC_NS pcmk1 pcmk2; do ip netns del $ns 2>/dev/null || true; done
    ;;
*) usage ;;
esac
