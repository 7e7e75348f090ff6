#!/usr/bin/env bash
# Two real libvirtd "blades" (A and B) on one machine, for system tests. Root only.
#
#   libvirt-blades.sh start BASEDIR        start blades a and b, print A=URI and B=URI
#   libvirt-blades.sh stop BASEDIR         kill everything the blades run (QEMU too)
#   libvirt-blades.sh status BASEDIR       processes and guests of each blade
#   libvirt-blades.sh uri BASEDIR a|b      the blade's libvirt URI
#   libvirt-blades.sh pid BASEDIR a|b libvirtd|virtlogd|virtlockd
#   libvirt-blades.sh qemu-pid BASEDIR a|b GUEST      PID of the guest's QEMU process
#   libvirt-blades.sh kill-libvirtd BASEDIR a|b       SIGKILL the blade's libvirtd (guests keep running)
#   libvirt-blades.sh kill-qemu BASEDIR a|b GUEST     SIGKILL the guest's QEMU process
#   libvirt-blades.sh start-libvirtd BASEDIR a|b      start the blade's libvirtd again after a kill
#   libvirt-blades.sh exec BASEDIR a|b CMD [ARG...]   run CMD inside the blade (its mount namespace:
#                                           /run/libvirt etc. and qemu:///system are the blade's)
#   libvirt-blades.sh guest-xml NAME [DISK [MEMORY_MIB]]   domain XML of a tiny TCG guest;
#                                           DISK *.qcow2 / *.raw / *.img: an image file,
#                                           any other path: a block device (shared-disk)
#   libvirt-blades.sh make-disk PATH [SIZE_MIB]       a qcow2 (PATH *.qcow2) or raw disk image
#   libvirt-blades.sh shared-disk BASEDIR NAME [SIZE_MIB]
#                                           a raw disk both blades see as a block device at
#                                           the same path (prints it): a shared LUN
#   libvirt-blades.sh reap                  stop blades whose starting process is gone
#
# Each blade is a libvirtd (under `tini -s`, a subreaper that reaps QEMU at once),
# its virtlogd and its virtlockd, in a private mount namespace (`unshare -m`) in
# which these directories are bind mounts of per-blade directories:
#   /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
#     <- BASEDIR/x/etc/libvirt, BASEDIR/x/run/libvirt, BASEDIR/x/var/lib/libvirt, ...
# so a path P inside blade x is BASEDIR/x/P on the host, e.g. a guest's QEMU PID file
# /run/libvirt/qemu/NAME.pid is BASEDIR/x/run/libvirt/qemu/NAME.pid. Each blade has
# its own socket directory BASEDIR/x/sock, its own host_uuid, no cgroup controllers,
# QEMU as root without a security driver, and lock_manager = "lockd" with one
# lockspace BASEDIR/lockspace shared by both blades: a disk in use by a guest on one
# blade cannot be opened by a guest on the other (libvirt's virtlockd protection).
# BASEDIR/shared is a directory both blades reach, for disk images.
#
# A shared disk (`shared-disk`) is one raw file BASEDIR/shared/NAME.raw with one loop
# device per blade, bind-mounted inside each blade's namespace at BASEDIR/disks/NAME:
# the way two real hosts see one LUN. QEMU's own image locking (an OFD lock on the
# opened file) then cannot see the other blade, exactly as between two hosts, so
# only virtlockd stands between two starts of one guest. (A plain image file opened
# by two QEMUs of one machine is refused by QEMU itself, "Failed to get write lock",
# before virtlockd is asked.)
#
# Blades whose owner has died since (a crashed test run) are stopped by `reap`, which
# `start` runs first; the owner is the caller of `start` (the test process) or the PID
# in $BLADES_OWNER. `start` on a BASEDIR used before stops what is left there first.
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
REGISTRY=/run/shelfha-blades
BLADES=(a b)
BLADE_DIRS=(etc/libvirt run/libvirt var/lib/libvirt var/cache/libvirt var/log/libvirt)
START_TIMEOUT=${BLADES_START_TIMEOUT:-60}

die() { echo "libvirt-blades: $*" >&2; exit 1; }
log() { echo "libvirt-blades: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

basedir_arg() {
    [ -n "${1:-}" ] || die "BASEDIR missing"
    local b
    b=$(readlink -m "$1")
    case "$b" in /|/tmp|/var/tmp|/root|/etc*|/usr*|/run|/var) die "refusing BASEDIR $b" ;; esac
    # unix socket paths are limited to 107 bytes: BASEDIR/x/sock/libvirt-sock-admin
    [ ${#b} -le 80 ] || die "BASEDIR too long (${#b} > 80 characters): $b"
    echo "$b"
}

blade_arg() {
    case "${1:-}" in a|A) echo a ;; b|B) echo b ;; *) die "blade must be a or b, got '${1:-}'" ;; esac
}

uri_of() { echo "qemu+unix:///system?socket=$1/$2/sock/libvirt-sock"; }

# the digits of a small file, or nothing
read_num() { cat "$1" 2>/dev/null | tr -dc 0-9 || true; }

# PID from a pid file if that process is alive and runs the expected program.
pid_from_file() {
    local f=$1 exe=$2 pid
    [ -f "$f" ] || return 1
    pid=$(read_num "$f")
    [ -n "$pid" ] || return 1
    is_proc "$pid" "$exe" || return 1
    echo "$pid"
}

# true if PID is alive (not a zombie) and its executable's name starts with $2
is_proc() {
    local pid=$1 exe=$2 st name
    [ -r "/proc/$pid/stat" ] || return 1
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ "$st" != Z ] || return 1
    name=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    name=${name##*/}
    name=${name% (deleted)}
    [[ "$name" == "$exe"* ]]
}

daemon_pid() { pid_from_file "$1/$2/run/libvirt/$3.pid" "$3"; }

qemu_pid() { pid_from_file "$1/$2/run/libvirt/qemu/$3.pid" qemu-system; }

# every live QEMU of blade x: from libvirt's pid files and the subreaper's children
qemu_pids() {
    local B=$1 x=$2 f pid tini
    for f in "$B/$x"/run/libvirt/qemu/*.pid; do
        [ -f "$f" ] && [ "${f##*/}" != driver.pid ] || continue
        pid_from_file "$f" qemu-system || true
    done
    tini=$(read_num "$B/$x/tini.pid")
    if [ -n "$tini" ] && is_proc "$tini" tini; then
        for f in /proc/[0-9]*/stat; do
            pid=${f#/proc/}; pid=${pid%/stat}
            [ "$(awk '{print $4}' "$f" 2>/dev/null)" = "$tini" ] || continue
            is_proc "$pid" qemu-system && echo "$pid"
        done
    fi
    return 0
}

# every process in the blade's mount namespaces (daemons, and what `exec` started)
ns_pids() {
    local X=$1/$2 f ns
    [ -s "$X/mntns" ] || return 0
    for f in /proc/[0-9]*/ns/mnt; do
        ns=$(readlink "$f" 2>/dev/null) || continue
        if grep -qxF "$ns" "$X/mntns"; then
            f=${f#/proc/}; echo "${f%%/*}"
        fi
    done
    return 0
}

# a process inside blade x's mount namespace, to enter it
ns_anchor() {
    local B=$1 x=$2 d
    for d in libvirtd virtlockd virtlogd; do
        daemon_pid "$B" "$x" "$d" && return 0
    done
    return 1
}

# wait until none of the given PIDs is alive (zombies count as gone)
wait_gone() {
    local deadline=$((SECONDS + ${WAIT_GONE_S:-15})) pid alive
    while :; do
        alive=
        for pid in "$@"; do
            [ -r "/proc/$pid/stat" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] && alive="$alive $pid"
        done
        [ -z "$alive" ] && return 0
        [ $SECONDS -lt $deadline ] || { log "still alive after kill:$alive"; return 1; }
        sleep 0.05
    done
}

write_config() {
    local B=$1 x=$2 X=$1/$2 uuid
    rm -rf --one-file-system "${X:?}"
    mkdir -p "$X/sock"
    local d
    for d in "${BLADE_DIRS[@]}"; do mkdir -p "$X/$d"; done
    cp -a /etc/libvirt/. "$X/etc/libvirt/"
    # nothing may autostart (a default network would need a bridge and dnsmasq)
    find "$X/etc/libvirt" -path '*/autostart/*' -delete
    rm -f "$X/etc/libvirt/qemu/"*.xml
    # inside the blade, the default socket path of qemu:///system leads to this blade
    ln -s "$X/sock/libvirt-sock" "$X/run/libvirt/libvirt-sock"
    ln -s "$X/sock/libvirt-sock-ro" "$X/run/libvirt/libvirt-sock-ro"
    uuid=$(cat /proc/sys/kernel/random/uuid)
    echo "$uuid" > "$X/host_uuid"
    cat >> "$X/etc/libvirt/libvirtd.conf" <<EOF

# blade $x (tests/support/libvirt-blades.sh)
unix_sock_dir = "$X/sock"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "$uuid"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >> "$X/etc/libvirt/qemu.conf" <<EOF

# blade $x (tests/support/libvirt-blades.sh)
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
lock_manager = "lockd"
EOF
    cat >> "$X/etc/libvirt/qemu-lockd.conf" <<EOF

# blade $x (tests/support/libvirt-blades.sh): both blades share this lockspace
auto_disk_leases = 1
require_lease_for_disks = 1
file_lockspace_dir = "$B/lockspace"
EOF
}

# Runs libvirtd of blade x in a new private mount namespace (background). Starts the
# blade's virtlogd and virtlockd first unless they still run.
launch_libvirtd() {
    local B=$1 x=$2 X=$1/$2
    local d
    for d in "${BLADE_DIRS[@]}"; do mkdir -p "/$d"; done
    local need_logd=1 need_lockd=1
    daemon_pid "$B" "$x" virtlogd >/dev/null && need_logd=0
    daemon_pid "$B" "$x" virtlockd >/dev/null && need_lockd=0
    # shellcheck disable=SC2016
    local init='
        set -e
        X=$1
        for d in etc/libvirt run/libvirt var/lib/libvirt var/cache/libvirt var/log/libvirt; do
            mount --bind "$X/$d" "/$d"
        done
        if [ -f "$X/disk-binds" ]; then
            while read -r dev target; do mount --bind "$dev" "$target"; done < "$X/disk-binds"
        fi
        [ "$2" = 0 ] || virtlogd -d -p /run/libvirt/virtlogd.pid
        [ "$3" = 0 ] || virtlockd -d -p /run/libvirt/virtlockd.pid
        echo $$ > "$X/tini.pid"
        exec tini -s -- libvirtd -p /run/libvirt/libvirtd.pid'
    rm -f "$X/tini.pid" "$X/run/libvirt/libvirtd.pid"
    setsid unshare -m --propagation private -- bash -c "$init" blade-init "$X" $need_logd $need_lockd \
        >> "$X/daemon.log" 2>&1 < /dev/null &
}

wait_ready() {
    local B=$1 x=$2 X=$1/$2 deadline=$((SECONDS + START_TIMEOUT)) uri
    uri=$(uri_of "$B" "$x")
    while :; do
        if [ -S "$X/sock/libvirt-sock" ] && virsh -q -c "$uri" version >/dev/null 2>&1; then
            local lv
            lv=$(daemon_pid "$B" "$x" libvirtd) || die "blade $x: libvirtd answers but has no PID file"
            readlink "/proc/$lv/ns/mnt" >> "$X/mntns"
            return 0
        fi
        local tini
        tini=$(read_num "$X/tini.pid")
        if [ -n "$tini" ] && ! is_proc "$tini" tini; then
            tail -20 "$X/daemon.log" >&2 || true
            die "blade $x: libvirtd exited during start (log: $X/daemon.log, $X/var/log/libvirt/libvirtd.log)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -20 "$X/daemon.log" >&2 || true
            die "blade $x: libvirtd not answering on $uri after ${START_TIMEOUT}s"
        fi
        sleep 0.05
    done
}

# loop devices of shared disks: "DEVICE BACKING-FILE" lines in BASEDIR/loops
detach_loops() {
    local B=$1 dev back cur
    [ -f "$B/loops" ] || return 0
    while read -r dev back; do
        cur=$(losetup -n -O BACK-FILE "$dev" 2>/dev/null | sed 's/[[:space:]]*$//' || true)
        [ "$cur" = "$back" ] && { losetup -d "$dev" || log "could not detach $dev"; }
    done < "$B/loops"
    rm -f "$B/loops"
}

cmd_shared_disk() {
    need_root
    local B name size=${3:-16}
    B=$(basedir_arg "${1:-}")
    name=${2:-}
    [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "disk name must match [A-Za-z0-9_.-]+"
    [[ "$size" =~ ^[0-9]+$ ]] || die "size must be a number of MiB"
    [ -f "$B/blades.env" ] || die "blades of $B are not running"
    local file=$B/shared/$name.raw target=$B/disks/$name x dev pid
    [ -e "$target" ] && die "shared disk $name exists already"
    mkdir -p "$B/shared" "$B/disks"
    qemu-img create -q -f raw "$file" "${size}M"
    : > "$target"
    for x in "${BLADES[@]}"; do
        dev=$(losetup -f --show "$file") || die "losetup failed (no loop devices?)"
        echo "$dev $file" >> "$B/loops"
        echo "$dev $target" >> "$B/$x/disk-binds"
        pid=$(ns_anchor "$B" "$x") || die "blade $x: not running"
        nsenter -t "$pid" -m mount --bind "$dev" "$target"
    done
    echo "$target"
}

registry_file() { echo "$REGISTRY/$(echo -n "$1" | sha256sum | cut -c1-16)"; }

cmd_start() {
    need_root
    local B
    B=$(basedir_arg "${1:-}")
    for c in libvirtd virtlogd virtlockd virsh tini unshare qemu-system-x86_64; do
        command -v "$c" >/dev/null || die "$c not installed (run: bash tests/ci.sh install)"
    done
    # without udev /dev/kvm is 0600: libvirt then re-probes QEMU on every call
    # (tens of seconds per define); the guests use TCG, but give it to group kvm
    if [ -c /dev/kvm ] && [ "$(stat -c %a /dev/kvm)" = 600 ] && getent group kvm >/dev/null; then
        chgrp kvm /dev/kvm && chmod 0660 /dev/kvm || true
    fi
    cmd_reap
    if [ -e "$B/blades.env" ] || [ -e "$B/a" ] || [ -e "$B/b" ]; then
        log "$B was used before: stopping what is left of it"
        cmd_stop "$B" >/dev/null
    fi
    rm -rf --one-file-system "${B:?}/lockspace" "${B:?}/disks"
    mkdir -p "$B/lockspace" "$B/shared" "$REGISTRY"
    printf '%s %s\n' "${BLADES_OWNER:-$PPID}" "$B" > "$(registry_file "$B")"
    local x
    for x in "${BLADES[@]}"; do
        write_config "$B" "$x"
        launch_libvirtd "$B" "$x"
    done
    for x in "${BLADES[@]}"; do wait_ready "$B" "$x"; done
    {
        echo "A=$(uri_of "$B" a)"
        echo "B=$(uri_of "$B" b)"
    } > "$B/blades.env"
    cat "$B/blades.env"
}

cmd_stop() {
    need_root
    local B
    B=$(basedir_arg "${1:-}")
    local x pids=() p
    for x in "${BLADES[@]}"; do
        [ -d "$B/$x" ] || continue
        local lv tini
        lv=$(daemon_pid "$B" "$x" libvirtd || true)
        tini=$(read_num "$B/$x/tini.pid")
        [ -n "$tini" ] && ! is_proc "$tini" tini && tini=
        for p in $(printf '%s\n' $lv $tini $(qemu_pids "$B" "$x") $(ns_pids "$B" "$x") \
                   $(daemon_pid "$B" "$x" virtlogd || true) $(daemon_pid "$B" "$x" virtlockd || true) | sort -u); do
            kill -KILL "$p" 2>/dev/null && pids+=("$p")
        done
    done
    wait_gone "${pids[@]}" || die "processes of $B survived SIGKILL"
    # the namespaces are gone; their numbers may be reused by unrelated processes later
    for x in "${BLADES[@]}"; do rm -f "$B/$x/mntns"; done
    detach_loops "$B"
    # the bind mounts live in the blades' private namespaces, which are gone with their
    # processes; unmount anything left under BASEDIR in this namespace (none expected)
    local m
    m=$(awk -v d="$B" '$5==d || index($5, d"/")==1 {print $5}' /proc/self/mountinfo | sort -r)
    for p in $m; do umount -l "$p" || true; done
    rm -f "$(registry_file "$B")" "$B/blades.env"
    echo "stopped $B (${#pids[@]} processes killed)"
}

cmd_status() {
    local B
    B=$(basedir_arg "${1:-}")
    local x rc=0
    for x in "${BLADES[@]}"; do
        if [ ! -d "$B/$x" ]; then echo "blade $x: absent"; rc=1; continue; fi
        local lv
        lv=$(daemon_pid "$B" "$x" libvirtd || echo -)
        [ "$lv" = - ] && rc=1
        echo "blade $x: uri=$(uri_of "$B" "$x") libvirtd=$lv" \
             "virtlogd=$(daemon_pid "$B" "$x" virtlogd || echo -)" \
             "virtlockd=$(daemon_pid "$B" "$x" virtlockd || echo -)"
        local f
        for f in "$B/$x"/run/libvirt/qemu/*.pid; do
            [ -f "$f" ] && [ "${f##*/}" != driver.pid ] || continue
            local n
            n=$(basename "$f" .pid)
            echo "  guest $n: qemu=$(qemu_pid "$B" "$x" "$n" || echo -)"
        done
    done
    return $rc
}

cmd_reap() {
    need_root
    [ -d "$REGISTRY" ] || return 0
    local f owner dir
    for f in "$REGISTRY"/*; do
        [ -f "$f" ] || continue
        read -r owner dir < "$f" || continue
        if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then continue; fi
        log "reaping blades of a run that is gone: $dir"
        if [ -d "$dir" ]; then cmd_stop "$dir" >/dev/null || true; fi
        rm -f "$f"
    done
}

cmd_guest_xml() {
    local name=${1:-} disk=${2:-} mem=${3:-64} uuid disks=
    [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "guest name must match [A-Za-z0-9_.-]+"
    [[ "$mem" =~ ^[0-9]+$ ]] || die "memory must be a number of MiB"
    # the same name gives the same UUID: both blades define the same guest
    uuid=$(echo -n "shelfha-guest-$name" | sha256sum | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
    if [ -n "$disk" ]; then
        case "$disk" in /*) ;; *) die "disk path must be absolute" ;; esac
        case "$disk" in
            *.qcow2) disks="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$disk'/>" ;;
            *.raw|*.img) disks="<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$disk'/>" ;;
            # a shared-disk path: a block device inside each blade
            *) disks="<disk type='block' device='disk'><driver name='qemu' type='raw' cache='none'/><source dev='$disk'/>" ;;
        esac
        disks="$disks<target dev='vda' bus='virtio'/></disk>"
    fi
    sed -e "s|@NAME@|$name|" -e "s|@UUID@|$uuid|" -e "s|@MEMORY_KIB@|$((mem * 1024))|g" \
        -e "s|<!--DISKS-->|$disks|" "$HERE/guest.xml"
}

cmd_make_disk() {
    local path=${1:-} size=${2:-16} fmt
    [ -n "$path" ] || die "PATH missing"
    case "$path" in *.qcow2) fmt=qcow2 ;; *) fmt=raw ;; esac
    mkdir -p "$(dirname "$path")"
    qemu-img create -q -f "$fmt" "$path" "${size}M"
    echo "$path"
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    case "$cmd" in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        reap) cmd_reap ;;
        uri) uri_of "$(basedir_arg "${1:-}")" "$(blade_arg "${2:-}")" ;;
        pid)
            local B x
            B=$(basedir_arg "${1:-}"); x=$(blade_arg "${2:-}")
            case "${3:-}" in libvirtd|virtlogd|virtlockd) ;; *) die "daemon must be libvirtd, virtlogd or virtlockd" ;; esac
            daemon_pid "$B" "$x" "$3" || die "blade $x: no $3 running"
            ;;
        qemu-pid)
            local B x
            B=$(basedir_arg "${1:-}"); x=$(blade_arg "${2:-}")
            qemu_pid "$B" "$x" "${3:?GUEST missing}" || die "blade $x: no QEMU running for guest ${3}"
            ;;
        kill-libvirtd)
            need_root
            local B x p
            B=$(basedir_arg "${1:-}"); x=$(blade_arg "${2:-}")
            p=$(daemon_pid "$B" "$x" libvirtd) || die "blade $x: no libvirtd running"
            kill -KILL "$p"
            wait_gone "$p"
            echo "killed libvirtd $p of blade $x"
            ;;
        kill-qemu)
            need_root
            local B x p
            B=$(basedir_arg "${1:-}"); x=$(blade_arg "${2:-}")
            p=$(qemu_pid "$B" "$x" "${3:?GUEST missing}") || die "blade $x: no QEMU running for guest $3"
            kill -KILL "$p"
            wait_gone "$p"
            echo "killed QEMU $p of guest $3 on blade $x"
            ;;
        start-libvirtd)
            need_root
            local B x
            B=$(basedir_arg "${1:-}"); x=$(blade_arg "${2:-}")
            [ -d "$B/$x/etc/libvirt" ] || die "blade $x of $B was never started"
            daemon_pid "$B" "$x" libvirtd >/dev/null && die "blade $x: libvirtd still runs"
            launch_libvirtd "$B" "$x"
            wait_ready "$B" "$x"
            uri_of "$B" "$x"
            ;;
        exec)
            need_root
            local B x p
            B=$(basedir_arg "${1:-}"); x=$(blade_arg "${2:-}")
            shift 2
            [ $# -gt 0 ] || die "exec: CMD missing"
            p=$(ns_anchor "$B" "$x") || die "blade $x: not running"
            exec nsenter -t "$p" -m -- "$@"
            ;;
        guest-xml) cmd_guest_xml "$@" ;;
        make-disk) cmd_make_disk "$@" ;;
        shared-disk) cmd_shared_disk "$@" ;;
        *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
}

main "$@"
