//! The allow-list: every element and attribute a partner definition may use. What is not
//! listed is refused; see the module documentation for the reasons.

use super::*;

/// Any attributes and any descendants: a subtree that names no host resource (guest
/// addresses, CPU model, tuning...). The global checks of [`check_rules`] still apply.
const FREE: &[&str] = &["*"];

/// Deepest `<backingStore>` nesting accepted (the walk recurses along it).
pub(super) const MAX_BACKING_DEPTH: usize = 64;

/// Network disk protocols accepted with `[guests] allow_network_disks = true`. `ssh`
/// (host key files and agent socket), `sheepdog` and `vxhs` never.
const NETWORK_PROTOCOLS: &[&str] = &[
    "rbd", "iscsi", "nbd", "gluster", "http", "https", "ftp", "ftps", "tftp", "nfs",
];

/// Where libvirt puts a virtio channel's socket when the definition gives no path; the live
/// XML shows it as `<dir>/domain-<id>-<name>/<target name>` and a define drops it again.
const LIBVIRT_CHANNEL_DIR: &str = "/var/lib/libvirt/qemu/channel/target/";

/// Allowed elements, as the path of local names below `<domain>` (the four character
/// device elements as `chardev`, a backing store's source as the disk's), and their
/// allowed attributes ([`FREE`]: any, with any descendants).
const ALLOWED: &[(&str, &[&str])] = &[
    ("name", &[]),
    ("uuid", &[]),
    ("genid", &[]),
    ("title", &[]),
    ("description", &[]),
    ("memory", &["unit", "dumpCore"]),
    ("currentMemory", &["unit"]),
    ("maxMemory", &["unit", "slots"]),
    ("memoryBacking", FREE),
    ("vcpu", &["placement", "cpuset", "current"]),
    ("vcpus", FREE),
    ("iothreads", &[]),
    ("iothreadids", FREE),
    ("defaultiothread", FREE),
    ("cputune", FREE),
    ("numatune", FREE),
    ("memtune", FREE),
    ("blkiotune", &[]),
    ("blkiotune/weight", &[]),
    ("resource", &[]),
    ("resource/partition", &[]),
    ("sysinfo", &["type"]),
    ("sysinfo/bios", &[]),
    ("sysinfo/bios/entry", &["name"]),
    ("sysinfo/system", &[]),
    ("sysinfo/system/entry", &["name"]),
    ("sysinfo/baseBoard", &[]),
    ("sysinfo/baseBoard/entry", &["name"]),
    ("sysinfo/chassis", &[]),
    ("sysinfo/chassis/entry", &["name"]),
    ("sysinfo/oemStrings", &[]),
    ("sysinfo/oemStrings/entry", &[]),
    ("os", &["firmware"]),
    ("os/type", &["arch", "machine"]),
    ("os/boot", &["dev"]),
    ("os/bootmenu", &["enable", "timeout"]),
    ("os/bios", &["useserial", "rebootTimeout"]),
    ("os/smbios", &["mode"]),
    (
        "os/loader",
        &["readonly", "secure", "type", "format", "stateless"],
    ),
    ("os/nvram", &["template", "format", "templateFormat"]),
    ("os/kernel", &[]),
    ("os/initrd", &[]),
    ("os/cmdline", &[]),
    ("os/dtb", &[]),
    ("os/acpi", &[]),
    ("os/acpi/table", &["type"]),
    ("os/firmware", &[]),
    ("os/firmware/feature", &["enabled", "name"]),
    ("features", FREE),
    ("cpu", FREE),
    ("clock", FREE),
    ("on_poweroff", &[]),
    ("on_reboot", &[]),
    ("on_crash", &[]),
    ("on_lockfailure", &[]),
    ("pm", FREE),
    ("perf", FREE),
    ("keywrap", FREE),
    // Vetted by check_seclabel.
    ("seclabel", FREE),
    ("devices", &[]),
    // Vetted by check_emulator.
    ("devices/emulator", &[]),
    ("devices/disk", &["type", "device", "model", "snapshot"]),
    ("devices/disk/driver", FREE),
    (
        "devices/disk/source",
        &[
            "file",
            "dev",
            "index",
            "startupPolicy",
            "protocol",
            "name",
            "query",
            "tls",
            "tlsHostname",
        ],
    ),
    ("devices/disk/source/seclabel", FREE),
    ("devices/disk/source/host", &["name", "port", "transport"]),
    ("devices/disk/source/auth", &["username"]),
    (
        "devices/disk/source/auth/secret",
        &["type", "usage", "uuid"],
    ),
    ("devices/disk/source/snapshot", &["name"]),
    ("devices/disk/source/config", &["file"]),
    ("devices/disk/source/initiator", &[]),
    ("devices/disk/source/initiator/iqn", &["name"]),
    ("devices/disk/source/readahead", &["size"]),
    ("devices/disk/source/timeout", &["seconds"]),
    ("devices/disk/source/ssl", &["verify"]),
    ("devices/disk/source/reconnect", &["delay"]),
    ("devices/disk/source/cookies", FREE),
    ("devices/disk/source/slices", FREE),
    ("devices/disk/source/encryption", &["format", "engine"]),
    (
        "devices/disk/source/encryption/secret",
        &["type", "uuid", "usage"],
    ),
    ("devices/disk/backingStore", &["type", "index"]),
    ("devices/disk/backingStore/format", &["type"]),
    (
        "devices/disk/target",
        &["dev", "bus", "tray", "removable", "rotation_rate"],
    ),
    ("devices/disk/readonly", &[]),
    ("devices/disk/shareable", &[]),
    ("devices/disk/transient", &["shareBacking"]),
    ("devices/disk/serial", &[]),
    ("devices/disk/wwn", &[]),
    ("devices/disk/vendor", &[]),
    ("devices/disk/product", &[]),
    ("devices/disk/address", FREE),
    ("devices/disk/alias", &["name"]),
    ("devices/disk/boot", &["order", "loadparm"]),
    ("devices/disk/blockio", FREE),
    ("devices/disk/iotune", FREE),
    ("devices/disk/geometry", FREE),
    ("devices/disk/encryption", &["format", "engine"]),
    ("devices/disk/encryption/secret", &["type", "uuid", "usage"]),
    ("devices/disk/auth", &["username"]),
    ("devices/disk/auth/secret", &["type", "usage", "uuid"]),
    ("devices/controller", FREE),
    ("devices/interface", &["type", "trustGuestRxFilters"]),
    (
        "devices/interface/source",
        &["network", "portgroup", "bridge", "dev", "mode", "portid"],
    ),
    ("devices/interface/mac", &["address", "type", "check"]),
    ("devices/interface/model", &["type"]),
    ("devices/interface/target", &["dev"]),
    ("devices/interface/driver", FREE),
    ("devices/interface/virtualport", FREE),
    ("devices/interface/bandwidth", FREE),
    ("devices/interface/vlan", FREE),
    ("devices/interface/link", &["state"]),
    ("devices/interface/mtu", &["size"]),
    ("devices/interface/coalesce", FREE),
    ("devices/interface/address", FREE),
    ("devices/interface/alias", &["name"]),
    ("devices/interface/boot", &["order", "loadparm"]),
    ("devices/interface/rom", &["bar", "file", "enabled"]),
    ("devices/interface/filterref", FREE),
    ("devices/interface/tune", FREE),
    ("devices/interface/guest", &["dev", "actual"]),
    ("devices/interface/teaming", &["type", "persistent"]),
    ("devices/interface/port", &["isolated"]),
    ("devices/interface/acpi", &["index"]),
    ("devices/input", &["type", "bus", "model"]),
    ("devices/input/driver", FREE),
    ("devices/input/address", FREE),
    ("devices/input/alias", &["name"]),
    (
        "devices/graphics",
        &[
            "type",
            "port",
            "autoport",
            "websocket",
            "listen",
            "sharePolicy",
            "passwd",
            "passwdValidTo",
            "keymap",
            "connected",
            "powerControl",
            "tlsPort",
            "defaultMode",
        ],
    ),
    ("devices/graphics/listen", &["type", "address", "network"]),
    ("devices/graphics/audio", &["id"]),
    ("devices/graphics/channel", &["name", "mode"]),
    ("devices/graphics/image", &["compression"]),
    ("devices/graphics/jpeg", &["compression"]),
    ("devices/graphics/zlib", &["compression"]),
    ("devices/graphics/playback", &["compression"]),
    ("devices/graphics/streaming", &["mode"]),
    ("devices/graphics/clipboard", &["copypaste"]),
    ("devices/graphics/mouse", &["mode"]),
    ("devices/graphics/filetransfer", &["enable"]),
    ("devices/graphics/gl", &["enable"]),
    ("devices/video", &[]),
    (
        "devices/video/model",
        &[
            "type", "vram", "heads", "primary", "ram", "vgamem", "vram64", "blob",
        ],
    ),
    ("devices/video/model/acceleration", &["accel3d", "accel2d"]),
    ("devices/video/model/resolution", &["x", "y"]),
    (
        "devices/video/driver",
        &["name", "vgaconf", "iommu", "ats", "packed", "page_per_vq"],
    ),
    ("devices/video/address", FREE),
    ("devices/video/alias", &["name"]),
    ("devices/sound", &["model", "multichannel"]),
    ("devices/sound/codec", &["type"]),
    ("devices/sound/audio", &["id"]),
    ("devices/sound/address", FREE),
    ("devices/sound/alias", &["name"]),
    ("devices/audio", &["id", "type", "timerPeriod"]),
    (
        "devices/audio/input",
        &["mixingEngine", "fixedSettings", "voices", "bufferLength"],
    ),
    (
        "devices/audio/input/settings",
        &["frequency", "channels", "format"],
    ),
    (
        "devices/audio/output",
        &["mixingEngine", "fixedSettings", "voices", "bufferLength"],
    ),
    (
        "devices/audio/output/settings",
        &["frequency", "channels", "format"],
    ),
    ("devices/chardev", &["type", "tty"]),
    ("devices/chardev/source", &["mode", "path", "channel"]),
    ("devices/chardev/source/seclabel", FREE),
    ("devices/chardev/source/clipboard", &["copypaste"]),
    ("devices/chardev/source/mouse", &["mode"]),
    (
        "devices/chardev/target",
        &["type", "port", "name", "address", "state"],
    ),
    ("devices/chardev/target/model", &["name"]),
    ("devices/chardev/log", &["file", "append"]),
    ("devices/chardev/address", FREE),
    ("devices/chardev/alias", &["name"]),
    (
        "devices/memballoon",
        &["model", "autodeflate", "freePageReporting"],
    ),
    ("devices/memballoon/stats", &["period"]),
    ("devices/memballoon/driver", FREE),
    ("devices/memballoon/address", FREE),
    ("devices/memballoon/alias", &["name"]),
    ("devices/rng", &["model"]),
    ("devices/rng/backend", &["model"]),
    ("devices/rng/rate", &["bytes", "period"]),
    ("devices/rng/driver", FREE),
    ("devices/rng/address", FREE),
    ("devices/rng/alias", &["name"]),
    ("devices/watchdog", &["model", "action"]),
    ("devices/watchdog/address", FREE),
    ("devices/watchdog/alias", &["name"]),
    ("devices/tpm", &["model"]),
    (
        "devices/tpm/backend",
        &["type", "version", "persistent_state"],
    ),
    ("devices/tpm/backend/encryption", &["secret"]),
    ("devices/tpm/backend/active_pcr_banks", FREE),
    ("devices/tpm/address", FREE),
    ("devices/tpm/alias", &["name"]),
    ("devices/panic", &["model"]),
    ("devices/panic/address", FREE),
    ("devices/panic/alias", &["name"]),
    ("devices/hub", &["type"]),
    ("devices/hub/address", FREE),
    ("devices/hub/alias", &["name"]),
    ("devices/iommu", &["model"]),
    ("devices/iommu/driver", FREE),
    ("devices/iommu/address", FREE),
    ("devices/iommu/alias", &["name"]),
    ("devices/nvram", &[]),
    ("devices/nvram/address", FREE),
    ("devices/nvram/alias", &["name"]),
    ("devices/memory", &["model", "access", "discard"]),
    ("devices/memory/source", &[]),
    ("devices/memory/source/pagesize", &["unit"]),
    ("devices/memory/source/nodemask", &[]),
    // Vetted by check_paths.
    ("devices/memory/source/path", &[]),
    ("devices/memory/source/alignsize", &["unit"]),
    ("devices/memory/source/pmem", &[]),
    ("devices/memory/target", FREE),
    ("devices/memory/address", FREE),
    ("devices/memory/alias", &["name"]),
    (
        "devices/filesystem",
        &["type", "accessmode", "multidevs", "fmode", "dmode"],
    ),
    (
        "devices/filesystem/driver",
        &["type", "format", "wrpolicy", "queue"],
    ),
    ("devices/filesystem/binary", &["xattr"]),
    ("devices/filesystem/binary/cache", &["mode"]),
    ("devices/filesystem/binary/lock", &["posix", "flock"]),
    ("devices/filesystem/binary/sandbox", &["mode"]),
    ("devices/filesystem/binary/thread_pool", &["size"]),
    // Vetted by check_paths.
    ("devices/filesystem/source", &["dir"]),
    ("devices/filesystem/target", &["dir"]),
    ("devices/filesystem/readonly", &[]),
    ("devices/filesystem/address", FREE),
    ("devices/filesystem/alias", &["name"]),
    ("devices/filesystem/boot", &["order"]),
    ("devices/filesystem/idmap", FREE),
];

/// The allowed attributes of the element at `path`, or None when it is not allowed.
fn lookup(path: &str) -> Option<&'static [&'static str]> {
    ALLOWED
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, attrs)| *attrs)
}

/// The allow-list path of a child `name` of the element at `parent` (the depth of
/// `<backingStore>` nesting along with it).
fn child_path(parent: &str, name: &str, backing: usize) -> (String, usize) {
    match (parent, name) {
        ("devices", "serial" | "console" | "parallel" | "channel") => {
            ("devices/chardev".into(), backing)
        }
        ("devices/disk", "backingStore") => ("devices/disk/backingStore".into(), 1),
        ("devices/disk/backingStore", "backingStore") => {
            ("devices/disk/backingStore".into(), backing + 1)
        }
        ("devices/disk/backingStore", "source") => ("devices/disk/source".into(), backing),
        ("", _) => (name.into(), backing),
        _ => (format!("{parent}/{name}"), backing),
    }
}

/// Checks the whole domain against the allow-list.
pub(super) fn check_domain(root: Node, rules: &Rules) -> Result<(), Refusal> {
    check_attrs(root, &["type", "id"])?;
    match attr(root, "type") {
        // No type: libvirt refuses the definition itself.
        None | Some("kvm" | "qemu" | "test") => {}
        other => {
            return Err(Refusal::new(
                UnprotectedReason::BadXml,
                format!("<domain type='{}'>: only kvm and qemu", other.unwrap_or("")),
            ))
        }
    }
    walk(root, "", rules, 0)
}

fn walk(node: Node, path: &str, rules: &Rules, backing: usize) -> Result<(), Refusal> {
    for child in node.children().filter(Node::is_element) {
        let name = local(child);
        if path.is_empty() && name == "metadata" {
            continue;
        }
        let (p, depth) = child_path(path, name, backing);
        if depth > MAX_BACKING_DEPTH {
            return Err(Refusal::new(
                UnprotectedReason::BadXml,
                format!("backing chain deeper than {MAX_BACKING_DEPTH}"),
            ));
        }
        let Some(allowed) = lookup(&p) else {
            return Err(unlisted_element(child, node));
        };
        check_values(&p, child, node, rules)?;
        if allowed != FREE {
            check_attrs(child, allowed)?;
            walk(child, &p, rules, depth)?;
        }
    }
    Ok(())
}

/// The value of the attribute `key` (any namespace; [`check_attrs`] refuses two).
fn attr<'a>(node: Node<'a, '_>, key: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.name() == key)
        .map(|a| a.value())
}

/// Every attribute of `node` must be one of `allowed`, and appear once (whatever its
/// namespace: libvirt's lookup ignores it, so two would be ambiguous).
fn check_attrs(node: Node, allowed: &[&str]) -> Result<(), Refusal> {
    let attrs: Vec<&str> = node.attributes().map(|a| a.name()).collect();
    for (i, a) in attrs.iter().enumerate() {
        if attrs[..i].contains(a) {
            return Err(Refusal::new(
                UnprotectedReason::BadXml,
                format!("<{}> has two `{a}` attributes", local(node)),
            ));
        }
        if !allowed.contains(a) {
            let reason = match (*a, local(node)) {
                ("path", "binary") | ("script", _) => UnprotectedReason::Emulator,
                ("file" | "dir" | "keyfile" | "template", _) => UnprotectedReason::DiskPath,
                ("socket" | "path" | "rendernode" | "rawio" | "sgio" | "managed", _) => {
                    UnprotectedReason::HostDevice
                }
                _ => UnprotectedReason::BadXml,
            };
            return Err(Refusal::new(
                reason,
                format!("<{}> attribute `{a}` not allowed", local(node)),
            ));
        }
    }
    Ok(())
}

/// A refusal for an element that is not on the allow-list.
fn unlisted_element(node: Node, parent: Node) -> Refusal {
    let name = local(node);
    let reason = match name {
        "hostdev" | "redirdev" | "redirfilter" | "smartcard" | "shmem" | "vsock" | "crypto"
        | "backend" | "source" | "reservations" | "gl" | "pstore" => UnprotectedReason::HostDevice,
        "lease" | "identity" | "knownHosts" | "mirror" | "dataStore" => UnprotectedReason::DiskPath,
        "script" | "downscript" | "bootloader" | "bootloader_args" | "init" => {
            UnprotectedReason::Emulator
        }
        _ => UnprotectedReason::BadXml,
    };
    Refusal::new(
        reason,
        format!("<{name}> in <{}> not allowed", local(parent)),
    )
}

fn refuse<T>(reason: UnprotectedReason, detail: String) -> Result<T, Refusal> {
    Err(Refusal::new(reason, detail))
}

/// The value rules of the allowed elements.
fn check_values(path: &str, node: Node, parent: Node, rules: &Rules) -> Result<(), Refusal> {
    use UnprotectedReason::{BadXml, DiskPath, HostDevice};
    let ty = attr(node, "type");
    let t = ty.unwrap_or("");
    match path {
        "devices/disk" => {
            disk_type(node, rules)?;
            match attr(node, "device") {
                None | Some("disk" | "cdrom" | "floppy") => Ok(()),
                Some("lun") => refuse(HostDevice, "<disk device='lun'> (SCSI passthrough)".into()),
                Some(d) => refuse(BadXml, format!("<disk device='{d}'>")),
            }
        }
        "devices/disk/backingStore" if ty.is_some() => disk_type(node, rules),
        "devices/disk/source" => match attr(node, "protocol") {
            None => Ok(()),
            Some(p) if rules.network_disks && NETWORK_PROTOCOLS.contains(&p) => Ok(()),
            Some(p) => refuse(
                HostDevice,
                format!("network disk protocol `{p}` not allowed"),
            ),
        },
        "devices/disk/source/host" => match attr(node, "transport") {
            None | Some("tcp" | "rdma") => Ok(()),
            Some(tr) => refuse(HostDevice, format!("network disk host transport `{tr}`")),
        },
        "devices/interface" => match t {
            "network" | "bridge" | "direct" => Ok(()),
            _ => refuse(HostDevice, format!("<interface type='{t}'>")),
        },
        "devices/interface/source" if attr(parent, "type") == Some("direct") => {
            match attr(node, "mode") {
                Some("passthrough") => refuse(
                    HostDevice,
                    "<interface type='direct'> in passthrough mode".into(),
                ),
                _ => Ok(()),
            }
        }
        "devices/input" => match t {
            "mouse" | "keyboard" | "tablet" => Ok(()),
            _ => refuse(HostDevice, format!("<input type='{t}'>")),
        },
        "devices/graphics" => match t {
            "vnc" | "spice" => Ok(()),
            _ => refuse(HostDevice, format!("<graphics type='{t}'>")),
        },
        "devices/graphics/listen" => match t {
            "address" | "network" | "none" => Ok(()),
            _ => refuse(HostDevice, format!("<listen type='{t}'>")),
        },
        "devices/video/driver" => match attr(node, "name") {
            None | Some("qemu") => Ok(()),
            Some(n) => refuse(HostDevice, format!("<video> driver `{n}`")),
        },
        "devices/audio" => match t {
            "none" | "spice" => Ok(()),
            "file" => refuse(DiskPath, "<audio type='file'>".into()),
            _ => refuse(
                HostDevice,
                format!("<audio type='{t}'> (a host audio backend)"),
            ),
        },
        "devices/chardev" => check_chardev(node),
        "devices/rng/backend" => match attr(node, "model") {
            Some("random" | "builtin") => Ok(()),
            m => refuse(HostDevice, format!("<rng> backend `{}`", m.unwrap_or(""))),
        },
        "devices/tpm/backend" => match t {
            "emulator" => Ok(()),
            _ => refuse(HostDevice, format!("<tpm> backend `{t}`")),
        },
        "devices/memory" => match attr(node, "model") {
            Some("dimm" | "nvdimm" | "virtio-pmem" | "virtio-mem") => Ok(()),
            m => refuse(HostDevice, format!("<memory model='{}'>", m.unwrap_or(""))),
        },
        "devices/filesystem" => match t {
            "" | "mount" => Ok(()),
            "file" | "block" => refuse(DiskPath, format!("<filesystem type='{t}'>")),
            _ => refuse(BadXml, format!("<filesystem type='{t}'>")),
        },
        "devices/filesystem/driver" => match t {
            "" | "path" | "virtiofs" => Ok(()),
            _ => refuse(BadXml, format!("<filesystem> driver `{t}`")),
        },
        "resource/partition" => {
            let p = text_of(node);
            if valid_prefix(&p) && (p == "/machine" || p.starts_with("/machine/")) {
                Ok(())
            } else {
                refuse(
                    HostDevice,
                    format!("resource partition `{p}` outside /machine"),
                )
            }
        }
        "sysinfo" => match t {
            "smbios" => Ok(()),
            _ => refuse(BadXml, format!("<sysinfo type='{t}'>")),
        },
        "os/smbios" => match attr(node, "mode") {
            Some("host") => refuse(HostDevice, "<smbios mode='host'>".into()),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A disk's or backing store's `type`.
fn disk_type(node: Node, rules: &Rules) -> Result<(), Refusal> {
    match attr(node, "type").unwrap_or("file") {
        "file" | "block" => Ok(()),
        "network" if rules.network_disks => Ok(()),
        "network" => refuse(
            UnprotectedReason::HostDevice,
            format!(
                "<{} type='network'> ([guests] allow_network_disks is off)",
                local(node)
            ),
        ),
        t @ ("nvme" | "vhostuser" | "vhostvdpa") => refuse(
            UnprotectedReason::HostDevice,
            format!("<{} type='{t}'>", local(node)),
        ),
        t => refuse(
            UnprotectedReason::DiskPath,
            format!("<{} type='{t}'>", local(node)),
        ),
    }
}

/// A serial port, console, parallel port or channel: no host file, device, pipe, socket
/// or network peer; a pty, a socket libvirt places itself, or a guest-side channel.
fn check_chardev(node: Node) -> Result<(), Refusal> {
    use UnprotectedReason::{DiskPath, HostDevice};
    let el = local(node);
    let t = attr(node, "type").unwrap_or("pty");
    match t {
        "pty" | "unix" | "null" | "vc" | "spicevmc" | "spiceport" | "qemu-vdagent" => {}
        "file" | "pipe" => return refuse(DiskPath, format!("<{el} type='{t}'>")),
        _ => {
            return refuse(
                HostDevice,
                format!("<{el} type='{t}'> (a host device or network peer)"),
            )
        }
    }
    if let Some(tty) = attr(node, "tty") {
        if t != "pty" || !pty_path(tty) {
            return refuse(HostDevice, format!("<{el}> tty `{tty}`"));
        }
    }
    let virtio_channel = el == "channel"
        && node
            .children()
            .any(|c| c.is_element() && local(c) == "target" && attr(c, "type") == Some("virtio"));
    for source in node
        .children()
        .filter(|c| c.is_element() && local(*c) == "source")
    {
        let Some(p) = attr(source, "path") else {
            continue;
        };
        let ok = match t {
            "pty" => pty_path(p),
            "unix" => virtio_channel && libvirt_channel_path(p),
            _ => false,
        };
        if !ok {
            return refuse(HostDevice, format!("<{el} type='{t}'> on host path `{p}`"));
        }
    }
    Ok(())
}

/// A pseudo-terminal of a live XML (libvirt ignores it when defining; QEMU opens a new one).
fn pty_path(p: &str) -> bool {
    valid_prefix(p)
        && p.strip_prefix("/dev/pts/")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The socket path libvirt generated for a virtio channel, as a live XML shows it
/// (`.../target/domain-<id>-<name>/<target name>`): libvirt drops it when defining.
fn libvirt_channel_path(p: &str) -> bool {
    let Some(rest) = p.strip_prefix(LIBVIRT_CHANNEL_DIR) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    valid_prefix(p)
        && matches!(parts.as_slice(), [dir, file]
            if dir.len() > "domain-".len() && dir.starts_with("domain-") && !file.is_empty())
}
