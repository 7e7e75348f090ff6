//! Definition policy: what a guest definition pushed by the partner may contain before this
//! blade stores it, defines it, starts it, or keeps a warm standby of it.
//!
//! A partner agent is trusted to push *its own guests*, not to run arbitrary QEMU processes
//! here. A pushed definition is refused ([`Refusal`], with the protocol's
//! [`UnprotectedReason`]) when:
//!
//! - the pushed name is not a valid guest name ([`UnprotectedReason::BadName`]), the XML is
//!   empty or larger than the protocol carries ([`UnprotectedReason::TooLarge`]);
//! - it is not UTF-8, does not parse, has a DTD, or its root is not a `<domain>` with exactly
//!   one plain-text `<name>` ([`UnprotectedReason::BadXml`]);
//! - its `<name>` differs from the name it was pushed under: a partner could otherwise
//!   redefine one of this blade's own guests ([`UnprotectedReason::NameMismatch`]);
//! - it uses an element or attribute that is not on the **allow-list** (below): what a
//!   protected server guest needs, and nothing that makes libvirt run a host program, open a
//!   host file, device or socket, or talk to another host for it. The refusal names the
//!   element or attribute and carries the closest reason: [`UnprotectedReason::Emulator`]
//!   for a program libvirt would run (`<script>`, `<downscript>`, a filesystem's
//!   `<binary path>`, `<bootloader>`), [`UnprotectedReason::HostDevice`] for a host device or
//!   other host resource (`<hostdev>`, `<redirdev>`, `<smartcard>`, `<shmem>`, `<vsock>`,
//!   `<interface type='hostdev'|'ethernet'|'vhostuser'|'user'|...>`, NVMe and vhost-user
//!   disks, network disks, host sockets and network peers of character devices, graphics and
//!   RNGs, render nodes, host audio backends, an external or passthrough TPM, evdev input,
//!   a SCSI `lun` or `rawio`/`sgio`, an RNG reading another device than `/dev/random` or
//!   `/dev/urandom`), [`UnprotectedReason::DiskPath`] for host files (`type='file'|'pipe'`
//!   character devices even under the allowed paths, file audio, `<lease>`, storage pool
//!   volumes and directory disks), [`UnprotectedReason::BadXml`] for anything else unknown;
//! - it carries any element of a libvirt driver namespace (`qemu:commandline`,
//!   `qemu:override`... under whatever prefix: the namespace URI decides)
//!   ([`UnprotectedReason::QemuCommandline`]);
//! - a disk or other host file lies outside `[guests] allowed_storage_paths`: every `file`
//!   attribute, `<source dir=...>`, `<source dev=...>` (not of an `<interface>`, where it names a NIC), the
//!   `path` of file/dev/pipe character devices and file audio, `<kernel>`, `<initrd>`,
//!   `<loader>`, `<nvram>` (and its `template`), `<dtb>`, ACPI `<table>`, and a memory device's
//!   `<source><path>` ([`UnprotectedReason::DiskPath`]);
//! - an `<emulator>` names another binary than one of `[guests] allowed_emulators` (libvirt
//!   would exec it as QEMU). An absent `<emulator>` is fine (libvirt picks the host's QEMU); a
//!   present one must be an absolute path without `.` or `..` components equal (compared by
//!   path components) to a listed one, untrimmed and without child elements (libvirt execs the
//!   element's whole string value as it is) ([`UnprotectedReason::Emulator`]);
//! - a `<seclabel>` (the domain's, or a device's under a `<source>`) asks for less than
//!   libvirt's default confinement: a `type` other than `dynamic` (`static` runs QEMU under the
//!   given label, `<label>0:0</label>` of model `dac` as root; `none` unconfined), a `relabel`
//!   other than `yes`, `model='none'`, a `<baselabel>` (libvirt honours it when defining: the
//!   context the dynamic label derives from), or any child element other than the generated
//!   `<label>`/`<imagelabel>` of an explicitly `type='dynamic'` domain label
//!   ([`UnprotectedReason::SecurityLabel`]).
//!
//! The allow-list (`allow_list::ALLOWED`, element paths below `<domain>` and their
//! attributes, plus value rules):
//!
//! - `<domain type='kvm'|'qemu'>` (`test` for libvirt's test driver), `name`, `uuid`,
//!   `genid`, `title`, `description`, `metadata` (opaque, not walked); memory and vCPU
//!   sizing, `memoryBacking`, `vcpus`, `iothreads`, `cputune`, `numatune`, `memtune`,
//!   `blkiotune` weight only, `resource/partition` under `/machine`, `sysinfo type='smbios'`;
//!   `os` (`type`, `boot`, `bootmenu`, `bios`, `smbios` other than `mode='host'`, `loader`,
//!   `nvram`, `kernel`, `initrd`, `dtb`, ACPI tables: paths under the allowed storage,
//!   `cmdline`, `firmware`), `features`, `cpu`, `clock`, `on_*`, `pm`, `perf`, `keywrap`,
//!   `seclabel` (rules below);
//! - devices: `emulator` (rules below); `disk` of `type` `file` or `block` (`device` disk,
//!   cdrom or floppy) with its driver, source, target, addressing, tuning, encryption and
//!   `backingStore` chain (at most 64 deep) of the same types, sources under the allowed
//!   storage; `type='network'` only with `[guests] allow_network_disks = true` (default
//!   false), then for `rbd`, `iscsi`, `nbd`, `gluster`, `http(s)`, `ftp(s)`, `tftp`, `nfs` over
//!   `tcp`/`rdma` hosts (never `ssh` with its host key files, `sheepdog`, `vxhs`, a unix
//!   socket transport); `controller`; `interface` of `type` `network`, `bridge` or `direct`
//!   (macvtap, not in `passthrough` mode) without `<script>`, `<downscript>`, `<backend>`,
//!   `<ip>`; `input` mouse/keyboard/tablet; `graphics` `vnc`/`spice` listening on an address,
//!   a network or nothing (no `socket`, no render node); `video` (QEMU driver, no render
//!   node); `sound`; `audio` `none`/`spice`; `serial`, `console`, `parallel`, `channel` of
//!   type `pty` (a live XML's `/dev/pts/N` path is fine: libvirt drops it when defining),
//!   `unix` without a path, or with the path libvirt generates for a virtio channel
//!   (`/var/lib/libvirt/qemu/channel/target/domain-<id>-<name>/<target>`, as a live XML shows
//!   it; libvirt drops it when defining), `null`, `vc`, `spicevmc`, `spiceport`,
//!   `qemu-vdagent`, with a `<log file>` under the allowed storage; `memballoon`; `rng` with
//!   a `random` or `builtin` backend; `watchdog`; `tpm` with an `emulator` backend; `panic`;
//!   `hub`; `iommu`; `nvram`; `memory` (`dimm`, `nvdimm`, `virtio-pmem`, `virtio-mem`; paths
//!   under the allowed storage); `filesystem type='mount'` (`path` or `virtiofs` driver, a
//!   `<binary>` without `path`, a `<source dir>` under the allowed storage).
//!
//! Subtrees that name no host resource (`cpu`, `features`, `clock`, `controller`, device
//! `address`, disk `iotune`...) are accepted whole; the driver-namespace, path, emulator and
//! label checks still apply inside them. An attribute given twice under different namespaces
//! is refused (libvirt's lookup ignores the namespace, so which one it reads is not ours to
//! guess).
//!
//! Dynamic labels: the owner pushes the inactive XML of a persistent guest
//! (`VIR_DOMAIN_XML_INACTIVE`), which has no generated labels, but the live XML of a transient
//! one, where libvirt shows the labels it generated for the running QEMU, e.g.
//! `<seclabel type='dynamic' model='dac' relabel='yes'><label>+0:+0</label>`
//! `<imagelabel>+0:+0</imagelabel></seclabel>`. libvirt's parser reads a dynamic label's
//! `<label>` and `<imagelabel>` from live XML only, never when defining (the parse is
//! inactive), and generates fresh ones at start, so these two are accepted under
//! `type='dynamic'`; a device's `<label>` (always honoured) and a `<baselabel>` are not.
//!
//! Paths must be absolute and free of `.` and `..` components; they are matched against the
//! allowed prefixes component by component (`/var/lib/libvirt/images2` is not under
//! `/var/lib/libvirt/images`). Symbolic links are not resolved: the allowed directories must
//! be writable by the operator only.
//!
//! The XML is parsed with a real parser (`roxmltree`); element and attribute names are
//! matched on their local name whatever their namespace, so a prefixed `x:hostdev` or
//! `x:file` cannot slip past a check that libvirt's own parser would not make. Only the
//! content of `<metadata>` (opaque to libvirt) is exempt from the allow-list, device and path
//! checks, not from the driver-namespace check.

use std::path::{Component, Path, PathBuf};

use roxmltree::{Document, Node, ParsingOptions};
use shelfha_proto::UnprotectedReason;

use crate::config::Config;
use crate::store::definitions::{valid_name, MAX_XML_LEN};

/// The namespace of libvirt's QEMU pass-through elements (`qemu:commandline`, ...).
pub const QEMU_NAMESPACE: &str = "http://libvirt.org/schemas/domain/qemu/1.0";
/// Every libvirt driver pass-through namespace starts with this (qemu, lxc, xen, bhyve...).
pub const DRIVER_NAMESPACE_PREFIX: &str = "http://libvirt.org/schemas/domain/";
/// Most XML nodes parsed in one definition (the XML is at most 64 KiB anyway).
const NODES_LIMIT: u32 = 100_000;

/// A refused definition: the protocol's reason and a short detail (the offending element,
/// path, or name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason_text(*reason))]
pub struct Refusal {
    /// Why, as reported to the ShMC in `GuestUnprotected`.
    pub reason: UnprotectedReason,
    /// Detail for the log and the message's text.
    pub detail: String,
}

impl Refusal {
    fn new(reason: UnprotectedReason, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

/// Short words for a reason, for logs.
pub fn reason_text(reason: UnprotectedReason) -> &'static str {
    match reason {
        UnprotectedReason::BadName => "invalid guest name",
        UnprotectedReason::TooLarge => "definition too large",
        UnprotectedReason::NameMismatch => "name differs from the pushed name",
        UnprotectedReason::HostDevice => "host device passthrough",
        UnprotectedReason::QemuCommandline => "driver pass-through (qemu:commandline)",
        UnprotectedReason::DiskPath => "host path outside allowed_storage_paths",
        UnprotectedReason::BadXml => "unusable domain XML",
        UnprotectedReason::StoreFailed => "cannot be stored",
        UnprotectedReason::Emulator => "emulator other than the host's QEMU",
        UnprotectedReason::SecurityLabel => "own security label",
        UnprotectedReason::Unknown(_) => "unknown reason",
    }
}

/// Owner side: whether a local guest can be pushed to the partner at all (its name is a
/// valid protocol guest name, its XML fits the definition chunks). Such a guest is not
/// protected and must not be counted as if pushed.
pub fn check_pushable(name: &str, xml: &str) -> Result<(), Refusal> {
    if !valid_name(name) {
        return Err(Refusal::new(
            UnprotectedReason::BadName,
            format!(
                "name of {} bytes: at most {} bytes, no `/`, no leading `.`, no control characters",
                name.len(),
                shelfha_proto::MAX_NAME
            ),
        ));
    }
    if xml.len() > MAX_XML_LEN {
        return Err(Refusal::new(
            UnprotectedReason::TooLarge,
            format!("{} bytes, at most {MAX_XML_LEN}", xml.len()),
        ));
    }
    if xml.is_empty() {
        return Err(Refusal::new(UnprotectedReason::BadXml, "empty definition"));
    }
    Ok(())
}

/// [`check_definition`] on raw pushed bytes: non-UTF-8 is refused as
/// [`UnprotectedReason::BadXml`]. Returns the XML text when accepted.
pub fn check_bytes<'a>(cfg: &Config, pushed_name: &str, xml: &'a [u8]) -> Result<&'a str, Refusal> {
    let text = std::str::from_utf8(xml).map_err(|e| {
        Refusal::new(
            UnprotectedReason::BadXml,
            format!("not UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    check_definition(cfg, pushed_name, text)?;
    Ok(text)
}

/// What a partner definition may use, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Directory prefixes host files must lie under (`[guests] allowed_storage_paths`).
    pub storage: &'a [PathBuf],
    /// Binaries an `<emulator>` may name (`[guests] allowed_emulators`).
    pub emulators: &'a [PathBuf],
    /// Whether network disks are accepted (`[guests] allow_network_disks`).
    pub network_disks: bool,
}

/// Checks a definition pushed (or stored) under `pushed_name` against the policy of `cfg`
/// (see the module documentation). Ok when it may be stored, defined and started here.
pub fn check_definition(cfg: &Config, pushed_name: &str, xml: &str) -> Result<(), Refusal> {
    let rules = Rules {
        storage: &cfg.allowed_storage_paths,
        emulators: &cfg.allowed_emulators,
        network_disks: cfg.allow_network_disks,
    };
    check_rules(&rules, pushed_name, xml)
}

/// [`check_definition`] with the allowed storage prefixes and emulators given directly, and
/// network disks refused.
pub fn check_xml(
    allowed: &[PathBuf],
    emulators: &[PathBuf],
    pushed_name: &str,
    xml: &str,
) -> Result<(), Refusal> {
    let rules = Rules {
        storage: allowed,
        emulators,
        network_disks: false,
    };
    check_rules(&rules, pushed_name, xml)
}

/// [`check_definition`] with the rules given directly.
pub fn check_rules(rules: &Rules, pushed_name: &str, xml: &str) -> Result<(), Refusal> {
    check_pushable(pushed_name, xml)?;
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(xml, opts)
        .map_err(|e| Refusal::new(UnprotectedReason::BadXml, format!("does not parse: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" || root.tag_name().namespace().is_some() {
        return Err(Refusal::new(
            UnprotectedReason::BadXml,
            format!("root element is <{}>, not <domain>", root.tag_name().name()),
        ));
    }
    check_name(root, pushed_name)?;
    for node in root.descendants().filter(Node::is_element) {
        if let Some(ns) = node.tag_name().namespace() {
            if ns.starts_with(DRIVER_NAMESPACE_PREFIX) {
                return Err(Refusal::new(
                    UnprotectedReason::QemuCommandline,
                    format!("<{}> of namespace {ns}", node.tag_name().name()),
                ));
            }
        }
    }
    for node in root.descendants().filter(Node::is_element) {
        if in_metadata(node, root) {
            continue;
        }
        check_device(node)?;
        check_paths(node, rules.storage)?;
        check_emulator(node, rules.emulators)?;
        check_seclabel(node, root)?;
    }
    allow_list::check_domain(root, rules)
}

/// Exactly one `<name>` child of `<domain>`, plain text equal to the pushed name.
fn check_name(root: Node, pushed_name: &str) -> Result<(), Refusal> {
    let names: Vec<Node> = root
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "name")
        .collect();
    let [name] = names.as_slice() else {
        return Err(Refusal::new(
            UnprotectedReason::BadXml,
            format!("{} <name> elements, expected one", names.len()),
        ));
    };
    if name.tag_name().namespace().is_some() || name.children().any(|c| c.is_element()) {
        return Err(Refusal::new(
            UnprotectedReason::BadXml,
            "<name> is not plain text",
        ));
    }
    let text: String = name
        .children()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    if text != pushed_name {
        return Err(Refusal::new(
            UnprotectedReason::NameMismatch,
            format!("pushed as `{pushed_name}`, defines `{text}`"),
        ));
    }
    Ok(())
}

/// Whether `node` lies inside the domain's `<metadata>` (opaque to libvirt).
fn in_metadata(node: Node, root: Node) -> bool {
    node.ancestors().any(|a| {
        a.is_element() && a.tag_name().name() == "metadata" && a.parent_element() == Some(root)
    })
}

/// Local name of an element (its namespace aside).
fn local<'i>(node: Node<'_, 'i>) -> &'i str {
    node.tag_name().name()
}

/// Every value of attributes named `key` (any namespace: libvirt's attribute lookup ignores it).
fn attrs<'a>(node: Node<'a, '_>, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    node.attributes()
        .filter(move |a| a.name() == key)
        .map(|a| a.value())
}

/// Whether any attribute `key` of `node` has one of `values`.
fn attr_is(node: Node, key: &str, values: &[&str]) -> bool {
    attrs(node, key).any(|v| values.contains(&v))
}

/// Whether `node` has an ancestor element (or is one) of local name `name`.
fn within(node: Node, name: &str) -> bool {
    node.ancestors()
        .any(|a| a.is_element() && a.tag_name().name() == name)
}

/// The text content of an element (all its text children, trimmed).
fn text_of(node: Node) -> String {
    node.children()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect::<String>()
        .trim()
        .to_owned()
}

fn check_device(node: Node) -> Result<(), Refusal> {
    let host = |what: String| Err(Refusal::new(UnprotectedReason::HostDevice, what));
    let parent = node.parent_element().map(local).unwrap_or("");
    match local(node) {
        "hostdev" | "redirdev" => host(format!("<{}>", node.tag_name().name())),
        "interface" if attr_is(node, "type", &["hostdev"]) => {
            host("<interface type='hostdev'>".into())
        }
        "disk" if attr_is(node, "type", &["nvme"]) => host("<disk type='nvme'>".into()),
        "smartcard" if attrs(node, "mode").any(|m| m.starts_with("host")) => {
            host("<smartcard> of the host".into())
        }
        "input" if attr_is(node, "type", &["passthrough", "evdev"]) => {
            host("<input> passed through from the host".into())
        }
        "backend" if parent == "tpm" && attr_is(node, "type", &["passthrough"]) => {
            host("<tpm> passthrough backend".into())
        }
        "backend" if parent == "rng" && attr_is(node, "model", &["random"]) => {
            let dev = text_of(node);
            if dev.is_empty() || dev == "/dev/random" || dev == "/dev/urandom" {
                Ok(())
            } else {
                host(format!("<rng> reads host device {dev}"))
            }
        }
        _ => Ok(()),
    }
}

fn check_paths(node: Node, allowed: &[PathBuf]) -> Result<(), Refusal> {
    let name = local(node);
    let parent = node.parent_element();
    let parent_name = parent.map(local).unwrap_or("");
    let mut paths: Vec<&str> = Vec::new();
    // `file` attributes always name host files (disk sources, chardev logs, sysinfo fw_cfg
    // entries); a source's `dir` is a host directory (a filesystem share, a directory disk),
    // a target's is the guest's mount tag.
    paths.extend(attrs(node, "file"));
    if name == "source" {
        paths.extend(attrs(node, "dir"));
        if !within(node, "interface") {
            paths.extend(attrs(node, "dev"));
        }
    }
    let host_file_types = ["file", "dev", "pipe"];
    let typed = attr_is(node, "type", &host_file_types)
        || (name == "source" && parent.is_some_and(|p| attr_is(p, "type", &host_file_types)));
    if typed && (name == "source" || name == "audio") {
        paths.extend(attrs(node, "path"));
    }
    if name == "nvram" {
        paths.extend(attrs(node, "template"));
    }
    let text_path = matches!(
        (name, parent_name),
        ("kernel" | "initrd" | "loader" | "nvram" | "dtb", "os")
            | ("table", "acpi")
            | ("path", "source")
    );
    let text = if text_path {
        text_of(node)
    } else {
        String::new()
    };
    if !text.is_empty() {
        paths.push(&text);
    }
    for p in paths {
        if let Err(why) = path_allowed(allowed, p) {
            return Err(Refusal::new(
                UnprotectedReason::DiskPath,
                format!("<{}> {why}", node.tag_name().name()),
            ));
        }
    }
    Ok(())
}

/// An `<emulator>` must be one of the `allowed` binaries.
fn check_emulator(node: Node, allowed: &[PathBuf]) -> Result<(), Refusal> {
    if local(node) != "emulator" {
        return Ok(());
    }
    let refuse = |why: String| Err(Refusal::new(UnprotectedReason::Emulator, why));
    if node.children().any(|c| c.is_element()) {
        return refuse("<emulator> is not plain text".into());
    }
    // libvirt takes the element's string value as it is: no trimming here either.
    let p: String = node
        .children()
        .filter(Node::is_text)
        .filter_map(|t| t.text())
        .collect();
    if !valid_prefix(&p) {
        return refuse(format!(
            "`{p}` is not an absolute path without `.` or `..` components"
        ));
    }
    if allowed.iter().any(|a| Path::new(&p) == a) {
        Ok(())
    } else {
        refuse(format!("`{p}` is not in allowed_emulators"))
    }
}

/// A `<seclabel>` may only keep libvirt's default, dynamic confinement (see the module
/// documentation for the generated labels of a live XML).
fn check_seclabel(node: Node, root: Node) -> Result<(), Refusal> {
    if local(node) != "seclabel" {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(Refusal::new(
            UnprotectedReason::SecurityLabel,
            format!("<seclabel> {why}"),
        ))
    };
    let mut typed_dynamic = false;
    for t in attrs(node, "type") {
        if t != "dynamic" {
            return refuse(format!("type='{t}'"));
        }
        typed_dynamic = true;
    }
    if let Some(r) = attrs(node, "relabel").find(|r| *r != "yes") {
        return refuse(format!("relabel='{r}'"));
    }
    if attr_is(node, "model", &["none"]) {
        return refuse("model='none'".into());
    }
    let domain_level = node.parent_element() == Some(root);
    for child in node.children().filter(Node::is_element) {
        match local(child) {
            // Generated labels of a live XML: libvirt ignores them when defining.
            "label" | "imagelabel" if domain_level && typed_dynamic => {}
            other if domain_level && !typed_dynamic => {
                return refuse(format!("with <{other}> but no type='dynamic'"))
            }
            other => return refuse(format!("with <{other}>")),
        }
    }
    Ok(())
}

/// The allow-list: every element and attribute a partner definition may use. What is not
/// listed is refused; see the module documentation for the reasons.
mod allow_list {
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
            | "backend" | "source" | "reservations" | "gl" | "pstore" => {
                UnprotectedReason::HostDevice
            }
            "lease" | "identity" | "knownHosts" | "mirror" | "dataStore" => {
                UnprotectedReason::DiskPath
            }
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
                    Some("lun") => {
                        refuse(HostDevice, "<disk device='lun'> (SCSI passthrough)".into())
                    }
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
            && node.children().any(|c| {
                c.is_element() && local(c) == "target" && attr(c, "type") == Some("virtio")
            });
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
}

/// Whether `p` is an absolute path without `.` or `..` components (what an allowed prefix
/// must be, and what a host path of a definition must be).
pub fn valid_prefix(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|c| c == ".." || c == ".")
}

/// Whether the host path `p` lies under one of the `allowed` directory prefixes, matched
/// component by component. Err says why not.
pub fn path_allowed(allowed: &[PathBuf], p: &str) -> Result<(), String> {
    if !valid_prefix(p) {
        return Err(format!(
            "`{p}` is not an absolute path without `.` or `..` components"
        ));
    }
    let path = Path::new(p);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("`{p}` has a `..` component"));
    }
    if allowed.iter().any(|prefix| path.starts_with(prefix)) {
        Ok(())
    } else {
        Err(format!("`{p}` is outside allowed_storage_paths"))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn allowed() -> Vec<PathBuf> {
        vec![
            PathBuf::from("/var/lib/libvirt/images"),
            PathBuf::from("/dev/shared/"),
        ]
    }

    fn domain(name: &str, devices: &str) -> String {
        format!(
            "<domain type='kvm'><name>{name}</name><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\
             <memory unit='KiB'>1024</memory><os><type arch='x86_64'>hvm</type></os>\
             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{devices}</devices></domain>"
        )
    }

    fn disk(path: &str) -> String {
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{path}'/><target dev='vda' bus='virtio'/></disk>"
        )
    }

    fn emulators() -> Vec<PathBuf> {
        crate::config::DEFAULT_ALLOWED_EMULATORS
            .iter()
            .map(PathBuf::from)
            .collect()
    }

    fn check(name: &str, xml: &str) -> Result<(), Refusal> {
        check_xml(&allowed(), &emulators(), name, xml)
    }

    fn reason(name: &str, xml: &str) -> UnprotectedReason {
        check(name, xml).unwrap_err().reason
    }

    #[test]
    fn test_ordinary_definitions_accepted() {
        let d = disk("/var/lib/libvirt/images/db.qcow2");
        let lun = "<disk type='block' device='disk'><driver name='qemu' type='raw' cache='none'/>\
                   <source dev='/dev/shared/db'/><target dev='vdb'/></disk>";
        let rest = "<interface type='direct'><source dev='eth0' mode='bridge'/></interface>\
                    <interface type='network'><source network='default'/></interface>\
                    <serial type='pty'><target port='0'/></serial>\
                    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/>\
                    </channel>\
                    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\
                    <disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>\
                    <filesystem type='mount'><driver type='virtiofs'/>\
                    <source dir='/var/lib/libvirt/images/share'/><target dir='share'/></filesystem>";
        assert_eq!(
            check("db", &domain("db", &format!("{d}{lun}{rest}"))),
            Ok(())
        );
        // The demo's and the tests' disk-less test-driver guests.
        assert_eq!(
            check(
                "g1",
                "<domain type='test'><name>g1</name><memory unit='KiB'>1024</memory></domain>"
            ),
            Ok(())
        );
        // Metadata is opaque to libvirt: names there are not devices.
        let meta = "<domain type='kvm'><name>m</name><metadata><x:hostdev xmlns:x='urn:x' \
                    file='/etc/shadow'/></metadata></domain>";
        assert_eq!(check("m", meta), Ok(()));
        // Entities are decoded before the comparison.
        assert_eq!(
            check("a&b", "<domain><name>a&amp;b</name></domain>"),
            Ok(())
        );
    }

    #[test]
    fn test_name_mismatch_refused() {
        let xml = domain("web", "");
        let r = check("db", &xml).unwrap_err();
        assert_eq!(r.reason, UnprotectedReason::NameMismatch);
        assert!(
            r.detail.contains("`db`") && r.detail.contains("`web`"),
            "{r}"
        );
        // Split by a comment, libvirt reads "web" as well.
        assert_eq!(
            reason("we", "<domain><name>we<!-- x -->b</name></domain>"),
            UnprotectedReason::NameMismatch
        );
        // Whitespace is part of the name for libvirt.
        assert_eq!(
            reason("db", "<domain><name> db</name></domain>"),
            UnprotectedReason::NameMismatch
        );
        assert_eq!(
            reason("db", "<domain><name>db</name><name>web</name></domain>"),
            UnprotectedReason::BadXml
        );
        assert_eq!(
            reason("db", "<domain><name>d<b/>b</name></domain>"),
            UnprotectedReason::BadXml
        );
        assert_eq!(
            reason("db", "<domain><uuid>x</uuid></domain>"),
            UnprotectedReason::BadXml
        );
    }

    #[test]
    fn test_host_devices_refused() {
        for dev in [
            "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' \
             bus='0x06' slot='0x02' function='0x0'/></source></hostdev>",
            "<redirdev bus='usb' type='spicevmc'/>",
            "<interface type='hostdev'><source><address type='pci' bus='0x02'/></source></interface>",
            "<disk type='nvme' device='disk'><source type='pci' managed='yes' namespace='1'>\
             <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source>\
             <target dev='vde'/></disk>",
            "<smartcard mode='host'/>",
            "<input type='evdev'><source dev='/dev/input/event1'/></input>",
            "<input type='passthrough' bus='virtio'><source evdev='/dev/input/event1'/></input>",
            "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>",
            "<rng model='virtio'><backend model='random'>/dev/hwrng</backend></rng>",
            // A prefixed element is still a host device for libvirt's name matching.
            "<h:hostdev xmlns:h='urn:h' mode='subsystem' type='usb'/>",
        ] {
            let r = check("db", &domain("db", dev)).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::HostDevice, "{dev}: {r}");
        }
    }

    #[test]
    fn test_qemu_commandline_any_prefix_refused() {
        for (prefix, el) in [
            ("qemu", "commandline"),
            ("q", "commandline"),
            ("shelfha", "commandline"),
            ("qemu", "override"),
        ] {
            let xml = format!(
                "<domain type='kvm' xmlns:{prefix}='{QEMU_NAMESPACE}'><name>db</name>\
                 <{prefix}:{el}><{prefix}:arg value='-device'/></{prefix}:{el}></domain>"
            );
            let r = check("db", &xml).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::QemuCommandline, "{xml}: {r}");
        }
        // As a default namespace, without a prefix.
        let xml = format!(
            "<domain type='kvm'><name>db</name><commandline xmlns='{QEMU_NAMESPACE}'>\
             <arg value='-S'/></commandline></domain>"
        );
        assert_eq!(reason("db", &xml), UnprotectedReason::QemuCommandline);
        // Even hidden in the metadata.
        let xml = format!(
            "<domain><name>db</name><metadata><c:commandline xmlns:c='{QEMU_NAMESPACE}'/>\
             </metadata></domain>"
        );
        assert_eq!(reason("db", &xml), UnprotectedReason::QemuCommandline);
        // Without the namespace, `commandline` is an element not on the allow-list.
        assert_eq!(
            reason("db", "<domain><name>db</name><commandline/></domain>"),
            UnprotectedReason::BadXml
        );
    }

    #[test]
    fn test_paths_outside_allowed_refused() {
        let bad = [
            disk("/etc/shadow"),
            disk("/var/lib/libvirt/images2/db.qcow2"),
            disk("/var/lib/libvirt"),
            disk("relative/db.qcow2"),
            disk(""),
            "<disk type='block' device='disk'><source dev='/dev/sda'/><target dev='vda'/></disk>"
                .into(),
            "<filesystem type='mount'><source dir='/'/><target dir='host'/></filesystem>".into(),
            "<filesystem type='mount'><source dir='/var/lib/libvirt/images/../../..'/>\
             <target dir='host'/></filesystem>"
                .into(),
            "<serial type='file'><source path='/etc/cron.d/x'/></serial>".into(),
            "<serial type='dev'><source path='/dev/ttyS0'/></serial>".into(),
            "<console type='pty'><log file='/root/.bashrc'/></console>".into(),
            "<memory model='nvdimm'><source><path>/dev/pmem0</path></source></memory>".into(),
            // A backing file of an allowed image.
            "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/a.qcow2'/>\
             <backingStore type='file'><source file='/srv/base.qcow2'/></backingStore>\
             <target dev='vda'/></disk>"
                .into(),
            // A prefixed attribute: libvirt's attribute lookup ignores the namespace.
            "<disk type='file' device='disk' xmlns:x='urn:x'><source x:file='/etc/passwd'/>\
             <target dev='vda'/></disk>"
                .into(),
        ];
        for dev in &bad {
            let r = check("db", &domain("db", dev)).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::DiskPath, "{dev}: {r}");
        }
        for os in [
            "<kernel>/boot/vmlinuz</kernel>",
            "<initrd>/tmp/initrd</initrd>",
            "<loader readonly='yes' type='pflash'>/root/OVMF.fd</loader>",
            "<nvram>/etc/nvram.fd</nvram>",
            "<nvram template='/etc/OVMF_VARS.fd'>/var/lib/libvirt/images/v.fd</nvram>",
            "<acpi><table type='slic'>/etc/slic.dat</table></acpi>",
        ] {
            let xml = format!("<domain><name>db</name><os><type>hvm</type>{os}</os></domain>");
            assert_eq!(reason("db", &xml), UnprotectedReason::DiskPath, "{os}");
        }
        let ok = "<domain><name>db</name><os><type>hvm</type>\
                  <kernel>/var/lib/libvirt/images/vmlinuz</kernel></os></domain>";
        assert_eq!(check("db", ok), Ok(()));
        // The detail names the path.
        let r = check("db", &domain("db", &disk("/etc/shadow"))).unwrap_err();
        assert!(r.detail.contains("/etc/shadow"), "{r}");
    }

    /// `virsh dumpxml --inactive` of the system-test rig's template guest (libvirt 9.0,
    /// running): what the owner pushes for a persistent guest.
    const LIBVIRT_INACTIVE: &str = "<domain type='qemu'>
  <name>g1</name>
  <uuid>09be8586-a869-ad26-f647-f1f78fadc7fd</uuid>
  <memory unit='KiB'>65536</memory>
  <currentMemory unit='KiB'>65536</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'/>
    <controller type='pci' index='0' model='pci-root'/>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
";

    /// `virsh dumpxml` (live) of the same guest: what the owner pushes for a transient guest.
    const LIBVIRT_LIVE: &str = "<domain type='qemu' id='1'>
  <name>g1</name>
  <uuid>09be8586-a869-ad26-f647-f1f78fadc7fd</uuid>
  <memory unit='KiB'>65536</memory>
  <currentMemory unit='KiB'>65536</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>qemu64</model>
    <feature policy='require' name='hypervisor'/>
    <feature policy='require' name='lahf_lm'/>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'>
      <alias name='usb'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'>
      <alias name='pci.0'/>
    </controller>
    <input type='mouse' bus='ps2'>
      <alias name='input0'/>
    </input>
    <input type='keyboard' bus='ps2'>
      <alias name='input1'/>
    </input>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+0:+0</label>
    <imagelabel>+0:+0</imagelabel>
  </seclabel>
</domain>

";

    /// A domain with `sec` as a direct child (after the devices).
    fn labelled(sec: &str) -> String {
        format!(
            "<domain type='kvm'><name>db</name><memory unit='KiB'>1024</memory>\
             <devices><emulator>/usr/bin/kvm</emulator></devices>{sec}</domain>"
        )
    }

    #[test]
    fn test_emulators() {
        // Absent: libvirt picks the host's QEMU.
        let bare = "<domain type='kvm'><name>db</name><devices/></domain>";
        assert_eq!(check("db", bare), Ok(()));
        for e in crate::config::DEFAULT_ALLOWED_EMULATORS {
            let xml = format!(
                "<domain type='kvm'><name>db</name><devices><emulator>{e}</emulator>\
                 </devices></domain>"
            );
            assert_eq!(check("db", &xml), Ok(()), "{e}");
        }
        assert_eq!(check("g1", LIBVIRT_INACTIVE), Ok(()));
        // Split by a comment: libvirt reads the whole text, as this check does.
        let split = "<domain><name>db</name><devices><emulator>/usr/bin/<!-- x -->kvm\
                     </emulator></devices></domain>";
        assert_eq!(check("db", split), Ok(()));
        let bad = [
            "/bin/sh",
            "/tmp/qemu-system-x86_64",
            "/usr/bin/qemu-system-x86_64x",
            "/usr/bin/../bin/kvm",
            "/usr/bin/./kvm",
            "usr/bin/kvm",
            " /usr/bin/kvm",
            "/usr/bin/kvm ",
            "",
        ];
        for e in bad {
            let xml = format!(
                "<domain type='kvm'><name>db</name><devices><emulator>{e}</emulator>\
                 </devices></domain>"
            );
            let r = check("db", &xml).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::Emulator, "`{e}`: {r}");
        }
        for xml in [
            // A second one after an allowed one; a prefixed one.
            "<domain><name>db</name><devices><emulator>/usr/bin/kvm</emulator>\
             <emulator>/bin/sh</emulator></devices></domain>",
            "<domain><name>db</name><devices><e:emulator xmlns:e='urn:e'>/bin/sh</e:emulator>\
             </devices></domain>",
            // Text in a child element is part of libvirt's string value.
            "<domain><name>db</name><devices><emulator>/usr/bin/kvm<x>2</x></emulator>\
             </devices></domain>",
            "<domain><name>db</name><devices><emulator/></devices></domain>",
        ] {
            assert_eq!(reason("db", xml), UnprotectedReason::Emulator, "{xml}");
        }
        // The detail names the path.
        let evil = "<domain><name>db</name><devices><emulator>/tmp/evil</emulator>\
                    </devices></domain>";
        let r = check("db", evil).unwrap_err();
        assert!(r.detail.contains("/tmp/evil"), "{r}");
        // Only the configured list counts.
        let mine = [PathBuf::from("/opt/qemu/bin/qemu-system-x86_64")];
        let r = check_xml(&allowed(), &mine, "g1", LIBVIRT_INACTIVE).unwrap_err();
        assert_eq!(r.reason, UnprotectedReason::Emulator);
        let opt = "<domain><name>db</name><devices><emulator>/opt/qemu/bin/qemu-system-x86_64\
                   </emulator></devices></domain>";
        assert_eq!(check_xml(&allowed(), &mine, "db", opt), Ok(()));
        assert_eq!(reason("db", opt), UnprotectedReason::Emulator);
        assert_eq!(
            check_xml(&allowed(), &[], "db", bare),
            Ok(()),
            "none allowed: only definitions without <emulator>"
        );
        // Inside the metadata it is not libvirt's.
        let meta = "<domain><name>db</name><metadata><emulator xmlns='urn:x'>/bin/sh</emulator>\
                    </metadata></domain>";
        assert_eq!(check("db", meta), Ok(()));
    }

    #[test]
    fn test_confining_security_labels_accepted() {
        for sec in [
            "<seclabel type='dynamic' model='dac' relabel='yes'/>",
            "<seclabel type='dynamic' model='selinux'/>",
            "<seclabel type='dynamic' model='apparmor' relabel='yes'/>",
            "<seclabel/>",
            "<seclabel model='dac'/>",
            // Stacked drivers.
            "<seclabel type='dynamic' model='selinux' relabel='yes'/>\
             <seclabel type='dynamic' model='dac' relabel='yes'/>",
            // Live XML: labels generated by libvirt, ignored when defining.
            "<seclabel type='dynamic' model='selinux' relabel='yes'>\
             <label>system_u:system_r:svirt_t:s0:c392,c662</label>\
             <imagelabel>system_u:object_r:svirt_image_t:s0:c392,c662</imagelabel></seclabel>",
            "<seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+994</label>\
             <imagelabel>+64055:+994</imagelabel></seclabel>",
        ] {
            assert_eq!(check("db", &labelled(sec)), Ok(()), "{sec}");
        }
        assert_eq!(check("g1", LIBVIRT_LIVE), Ok(()));
        // A device's label that only relabels, or skips what it could not label (live XML).
        for sec in [
            "<seclabel model='dac' relabel='yes'/>",
            "<seclabel model='selinux' labelskip='yes'/>",
        ] {
            let d = format!(
                "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/a.img'>\
                 {sec}</source><target dev='vda'/></disk>"
            );
            assert_eq!(check("db", &domain("db", &d)), Ok(()), "{sec}");
        }
    }

    #[test]
    fn test_own_security_labels_refused() {
        for sec in [
            // QEMU as root.
            "<seclabel type='static' model='dac' relabel='no'><label>0:0</label></seclabel>",
            "<seclabel type='static' model='dac' relabel='yes'><label>+0:+0</label></seclabel>",
            "<seclabel type='static' model='selinux' relabel='yes'>\
             <label>system_u:system_r:unconfined_t:s0</label></seclabel>",
            "<seclabel type='none'/>",
            "<seclabel type='none' model='none'/>",
            "<seclabel type='dynamic' model='dac' relabel='no'/>",
            "<seclabel type='dynamic' model='dac' relabel='off'/>",
            "<seclabel type='dynamic' model='none'/>",
            "<seclabel type='Static' model='dac'><label>0:0</label></seclabel>",
            // A base for the dynamic label: honoured when defining.
            "<seclabel type='dynamic' model='selinux'>\
             <baselabel>system_u:system_r:unconfined_t:s0</baselabel></seclabel>",
            // Labels without an explicit dynamic type.
            "<seclabel model='dac'><label>0:0</label></seclabel>",
            "<seclabel><imagelabel>0:0</imagelabel></seclabel>",
            // Unknown children are refused too.
            "<seclabel type='dynamic' model='dac'><x/></seclabel>",
            // Attribute lookups ignore the namespace.
            "<seclabel xmlns:x='urn:x' type='dynamic' x:type='static' model='dac'>\
             <label>0:0</label></seclabel>",
            "<seclabel xmlns:x='urn:x' type='dynamic' x:relabel='no'/>",
            // A prefixed element.
            "<s:seclabel xmlns:s='urn:s' type='none'/>",
            // Refused whatever comes first.
            "<seclabel type='dynamic' model='selinux'/><seclabel type='static' model='dac'>\
             <label>0:0</label></seclabel>",
        ] {
            let r = check("db", &labelled(sec)).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::SecurityLabel, "{sec}: {r}");
        }
        let r = check(
            "db",
            &labelled("<seclabel type='static' model='dac'><label>0:0</label></seclabel>"),
        )
        .unwrap_err();
        assert!(r.detail.contains("static"), "{r}");
        // Devices: relabel='no' (QEMU reaching a file libvirt did not label for it), an own
        // label (always honoured), the generated forms too.
        for sec in [
            "<seclabel relabel='no'/>",
            "<seclabel model='dac' relabel='no'/>",
            "<seclabel model='dac' relabel='yes'><label>0:0</label></seclabel>",
            "<seclabel model='selinux'><label>system_u:object_r:etc_t:s0</label></seclabel>",
            "<seclabel type='dynamic' model='dac'><label>+0:+0</label></seclabel>",
            "<seclabel type='none'/>",
        ] {
            let d = format!(
                "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/a.img'>\
                 {sec}</source><target dev='vda'/></disk>"
            );
            let r = check("db", &domain("db", &d)).unwrap_err();
            assert_eq!(
                r.reason,
                UnprotectedReason::SecurityLabel,
                "disk {sec}: {r}"
            );
            let c = format!(
                "<serial type='file'><source path='/var/lib/libvirt/images/s.log'>{sec}\
                 </source></serial>"
            );
            let r = check("db", &domain("db", &c)).unwrap_err();
            assert_eq!(
                r.reason,
                UnprotectedReason::SecurityLabel,
                "serial {sec}: {r}"
            );
        }
    }

    #[test]
    fn test_dot_dot_tricks_refused() {
        for p in [
            "/var/lib/libvirt/images/../../../../etc/shadow",
            "/var/lib/libvirt/images/..",
            "/var/lib/libvirt/images/./../x",
            "/var/lib/libvirt/images/sub/../../../../etc/shadow",
        ] {
            let r = check("db", &domain("db", &disk(p))).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::DiskPath, "{p}: {r}");
        }
        // Component matching, not string prefixes; repeated slashes are one separator.
        assert!(path_allowed(&allowed(), "/var/lib/libvirt/images/a/b.img").is_ok());
        assert!(path_allowed(&allowed(), "/var/lib/libvirt/images//a.img").is_ok());
        assert!(path_allowed(&allowed(), "/var/lib/libvirt/imagesX/a.img").is_err());
        assert!(path_allowed(&allowed(), "/dev/shared/db").is_ok());
        assert!(path_allowed(&allowed(), "/dev/sharedX").is_err());
        assert!(path_allowed(&[], "/var/lib/libvirt/images/a.img").is_err());
        assert!(path_allowed(&[PathBuf::from("/")], "/anything/at/all").is_ok());
    }

    #[test]
    fn test_bad_xml_refused() {
        for xml in [
            "<domain><name>db</name>",
            "<domain><name>db</name></domian>",
            "not xml at all",
            "<vm><name>db</name></vm>",
            "<domain xmlns='urn:other'><name>db</name></domain>",
            "<!DOCTYPE domain [<!ENTITY n \"db\">]><domain><name>&n;</name></domain>",
            "<domain><name>db</name><x a='1' a='2'/></domain>",
        ] {
            assert_eq!(reason("db", xml), UnprotectedReason::BadXml, "{xml}");
        }
        let cfg_allowed = allowed();
        let r = check_xml(&cfg_allowed, &emulators(), "db", "").unwrap_err();
        assert_eq!(r.reason, UnprotectedReason::BadXml);
        let big = format!(
            "<domain><name>db</name><!--{}--></domain>",
            "x".repeat(MAX_XML_LEN)
        );
        assert_eq!(reason("db", &big), UnprotectedReason::TooLarge);
        assert_eq!(
            reason(&"n".repeat(65), &domain(&"n".repeat(65), "")),
            UnprotectedReason::BadName
        );
    }

    #[test]
    fn test_non_utf8_refused() {
        let text = Config::parse(
            "slot = 1\nshmc = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:0\"\n\
             [partner]\nslot = 2\naddress = \"127.0.0.1:2\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let mut xml = b"<domain><name>db</name><description>".to_vec();
        xml.extend_from_slice(&[0xff, 0xfe]);
        xml.extend_from_slice(b"</description></domain>");
        let r = check_bytes(&text, "db", &xml).unwrap_err();
        assert_eq!(r.reason, UnprotectedReason::BadXml);
        assert!(r.detail.contains("UTF-8"), "{r}");
        assert_eq!(
            check_bytes(&text, "db", b"<domain><name>db</name></domain>"),
            Ok("<domain><name>db</name></domain>")
        );
    }

    /// Real libvirt 9.0 XML (`virsh dumpxml --inactive` and live) of the system-test rig's
    /// guests and of a typical server guest, the image and LUN paths moved under the test's
    /// allowed prefixes. See `agent/tests/fixtures/libvirt-9.0/`.
    const REAL_XML: &[(&str, &str)] = &[
        (
            "g1",
            include_str!("../tests/fixtures/libvirt-9.0/g1.inactive.xml"),
        ),
        (
            "g1",
            include_str!("../tests/fixtures/libvirt-9.0/g1.live.xml"),
        ),
        (
            "g2",
            include_str!("../tests/fixtures/libvirt-9.0/g2.inactive.xml"),
        ),
        (
            "g2",
            include_str!("../tests/fixtures/libvirt-9.0/g2.live.xml"),
        ),
        (
            "g3",
            include_str!("../tests/fixtures/libvirt-9.0/g3.live.xml"),
        ),
        ("srv", include_str!("../tests/fixtures/libvirt-9.0/srv.xml")),
        (
            "srv",
            include_str!("../tests/fixtures/libvirt-9.0/srv.inactive.xml"),
        ),
        (
            "srv",
            include_str!("../tests/fixtures/libvirt-9.0/srv.live.xml"),
        ),
    ];

    #[test]
    fn test_real_libvirt_xml_accepted() {
        for (name, xml) in REAL_XML {
            assert_eq!(check(name, xml), Ok(()), "{name}: {xml}");
        }
        // The rig's template as the system tests push it (no disk, an image, a LUN).
        let template = include_str!("../../tests/support/guest.xml")
            .replace("@NAME@", "t")
            .replace("@UUID@", "4dea22b3-1d52-d8f3-2516-782e98ab3fa0")
            .replace("@MEMORY_KIB@", "65536");
        assert_eq!(check("t", &template), Ok(()));
        let image = "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
                     <source file='/var/lib/libvirt/images/t.qcow2'/>\
                     <target dev='vda' bus='virtio'/></disk>";
        let lun = "<disk type='block' device='disk'><driver name='qemu' type='raw' \
                   cache='none'/><source dev='/dev/shared/t'/><target dev='vda' bus='virtio'/>\
                   </disk>";
        for d in [image, lun] {
            assert_eq!(
                check("t", &template.replace("<!--DISKS-->", d)),
                Ok(()),
                "{d}"
            );
        }
        // Inactive forms libvirt 9.0 wrote for other usual devices.
        let usual = "<interface type='network'><mac address='52:54:00:b4:85:20'/>\
             <source network='default'/><model type='virtio'/>\
             <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>\
             </interface>\
             <interface type='bridge'><mac address='52:54:00:11:22:33'/><source bridge='br0'/>\
             <model type='e1000'/></interface>\
             <interface type='direct'><mac address='52:54:00:2a:a0:99'/>\
             <source dev='eth0' mode='bridge'/><model type='rtl8139'/></interface>\
             <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/>\
             <address type='virtio-serial' controller='0' bus='0' port='1'/></channel>\
             <graphics type='spice' autoport='yes'><listen type='address'/>\
             <image compression='off'/></graphics><audio id='1' type='spice'/>\
             <video><model type='qxl' ram='65536' vram='65536' vgamem='16384' heads='1' \
             primary='yes'/></video>\
             <serial type='pty'><log file='/var/lib/libvirt/images/x.log' append='on'/>\
             <target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>\
             <channel type='qemu-vdagent'><source><clipboard copypaste='yes'/>\
             <mouse mode='client'/></source><target type='virtio' name='com.redhat.spice.0'/>\
             </channel>\
             <graphics type='vnc' port='-1' autoport='yes'><listen type='address'/></graphics>\
             <sound model='ich6'><codec type='micro'/></sound>\
             <watchdog model='i6300esb' action='reset'/>\
             <rng model='virtio'><backend model='builtin'/></rng>\
             <panic model='isa'><address type='isa' iobase='0x505'/></panic>\
             <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>";
        assert_eq!(check("db", &domain("db", usual)), Ok(()));
        // A backing chain inside the allowed paths.
        let chain = "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='/var/lib/libvirt/images/top.qcow2'/>\
             <backingStore type='file'><format type='qcow2'/>\
             <source file='/var/lib/libvirt/images/mid.qcow2'/>\
             <backingStore type='block'><format type='raw'/><source dev='/dev/shared/base'/>\
             <backingStore/></backingStore></backingStore><target dev='vda'/></disk>";
        assert_eq!(check("db", &domain("db", chain)), Ok(()));
    }

    /// Each of `devices`, in a domain, is refused for `want`.
    fn refused(devices: &[String], want: UnprotectedReason) {
        for dev in devices {
            let r = check("db", &domain("db", dev)).unwrap_err();
            assert_eq!(r.reason, want, "{dev}: {r}");
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// libvirt runs an ethernet interface's `<script>`/`<downscript>` as root.
    #[test]
    fn test_interface_scripts_refused() {
        refused(
            &strings(&[
                "<interface type='ethernet'><script path='/tmp/x'/>\
                 <downscript path='/tmp/y'/></interface>",
                "<interface type='ethernet'><target dev='tap0' managed='no'/></interface>",
            ]),
            UnprotectedReason::HostDevice,
        );
        // On the allowed types the script elements are refused by name.
        refused(
            &strings(&[
                "<interface type='bridge'><source bridge='br0'/><script path='/tmp/x'/>\
                 </interface>",
                "<interface type='network'><source network='default'/>\
                 <downscript path='/tmp/y'/></interface>",
            ]),
            UnprotectedReason::Emulator,
        );
        let r = check(
            "db",
            &domain(
                "db",
                "<interface type='ethernet'><script path='/tmp/x'/></interface>",
            ),
        )
        .unwrap_err();
        assert!(r.detail.contains("ethernet"), "{r}");
    }

    /// libvirt executes a virtiofs `<binary path>` as root instead of virtiofsd.
    #[test]
    fn test_virtiofs_binary_refused() {
        refused(
            &strings(&[
                "<filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/>\
                 <binary path='/tmp/x'/><source dir='/var/lib/libvirt/images/share'/>\
                 <target dir='share'/></filesystem>",
                "<filesystem><driver type='virtiofs'/><binary path='/usr/bin/virtiofsd'/>\
                 <source dir='/var/lib/libvirt/images/share'/><target dir='s'/></filesystem>",
            ]),
            UnprotectedReason::Emulator,
        );
        let r = check(
            "db",
            &domain(
                "db",
                "<filesystem><driver type='virtiofs'/><binary path='/tmp/x'/>\
                 <source dir='/var/lib/libvirt/images/share'/><target dir='s'/></filesystem>",
            ),
        )
        .unwrap_err();
        assert!(
            r.detail.contains("binary") && r.detail.contains("path"),
            "{r}"
        );
        // Without a path, the host's virtiofsd with its options is fine.
        let fs = "<filesystem type='mount'><driver type='virtiofs' queue='1024'/>\
                  <binary xattr='on'><cache mode='always'/><lock posix='on' flock='on'/>\
                  </binary><source dir='/var/lib/libvirt/images/share'/><target dir='s'/>\
                  </filesystem>";
        assert_eq!(check("db", &domain("db", fs)), Ok(()));
        // A virtiofsd started by someone else, behind a socket.
        refused(
            &strings(&["<filesystem type='mount'><driver type='virtiofs'/>\
                        <source socket='/run/x.sock'/><target dir='s'/></filesystem>"]),
            UnprotectedReason::HostDevice,
        );
        // A Xen bootloader is a host program too.
        let xml = "<domain type='kvm'><name>db</name><bootloader>/tmp/x</bootloader></domain>";
        assert_eq!(reason("db", xml), UnprotectedReason::Emulator);
    }

    /// Serial ports, consoles, parallel ports and channels on a host socket.
    #[test]
    fn test_unix_socket_chardevs_refused() {
        let mut cases = Vec::new();
        for el in ["serial", "console", "parallel", "channel"] {
            for mode in ["connect", "bind"] {
                for target in ["", "<target type='virtio' name='x.0'/>"] {
                    cases.push(format!(
                        "<{el} type='unix'><source mode='{mode}' \
                         path='/run/libvirt/libvirt-sock'/>{target}</{el}>"
                    ));
                }
            }
        }
        refused(&cases, UnprotectedReason::HostDevice);
        let r = check("db", &domain("db", &cases[0])).unwrap_err();
        assert!(r.detail.contains("/run/libvirt/libvirt-sock"), "{r}");
    }

    /// Character devices on host files, devices and pipes (even under the allowed paths), or
    /// talking to network peers.
    #[test]
    fn test_other_chardev_types_refused() {
        let (mut paths, mut hosts) = (Vec::new(), Vec::new());
        for el in ["serial", "console", "parallel", "channel"] {
            for t in ["file", "pipe"] {
                paths.push(format!(
                    "<{el} type='{t}'><source path='/var/lib/libvirt/images/c'/></{el}>"
                ));
            }
            for t in ["dev", "stdio", "nmdm"] {
                hosts.push(format!(
                    "<{el} type='{t}'><source path='/var/lib/libvirt/images/c'/></{el}>"
                ));
            }
            hosts.push(format!(
                "<{el} type='tcp'><source mode='connect' host='203.0.113.1' service='22'/>\
                 <protocol type='raw'/></{el}>"
            ));
            hosts.push(format!(
                "<{el} type='udp'><source mode='bind' host='0.0.0.0' service='2445'/>\
                 <source mode='connect' host='203.0.113.1' service='2445'/></{el}>"
            ));
        }
        refused(&paths, UnprotectedReason::DiskPath);
        refused(&hosts, UnprotectedReason::HostDevice);
        // A pty is fine.
        let pty = "<serial type='pty'><target port='0'/></serial><console type='pty'>\
                   <target type='serial' port='0'/></console>";
        assert_eq!(check("db", &domain("db", pty)), Ok(()));
    }

    /// A vhost-user interface on a host socket.
    #[test]
    fn test_vhostuser_interface_refused() {
        refused(
            &strings(&[
                "<interface type='vhostuser'><source type='unix' path='/run/x.sock' \
                 mode='server'/><model type='virtio'/></interface>",
                "<interface type='vhostuser'><source type='unix' path='/run/x.sock' \
                 mode='client'/><model type='virtio'/></interface>",
            ]),
            UnprotectedReason::HostDevice,
        );
    }

    /// Other interface types and options that reach host resources.
    #[test]
    fn test_other_interface_types_refused() {
        let mut cases = strings(&[
            "<interface type='user'><backend type='passt' logFile='/etc/x'/></interface>",
            "<interface type='direct'><source dev='eth0' mode='passthrough'/></interface>",
            "<interface type='network'><source network='default'/>\
             <backend tap='/dev/sda' vhost='/dev/sdb'/></interface>",
        ]);
        for t in [
            "user", "vdpa", "server", "client", "mcast", "udp", "internal", "null",
        ] {
            cases.push(format!("<interface type='{t}'/>"));
        }
        refused(&cases, UnprotectedReason::HostDevice);
    }

    /// Network disks are off by default: host sockets, any remote host, host key files.
    #[test]
    fn test_network_disks_refused_by_default() {
        let mut cases = strings(&[
            "<disk type='network' device='disk'><driver name='qemu' type='raw'/>\
             <source protocol='nbd' name='x'><host transport='unix' socket='/run/x.sock'/>\
             </source><target dev='vdb'/></disk>",
            "<disk type='network' device='cdrom'><source protocol='ssh' name='/etc/shadow'>\
             <host name='203.0.113.1' port='22'/><identity username='root' \
             keyfile='/root/.ssh/id_rsa'/></source><target dev='hdc'/><readonly/></disk>",
            // A network backing store under an allowed image.
            "<disk type='file' device='disk'><source file='/var/lib/libvirt/images/a.qcow2'/>\
             <backingStore type='network'><format type='raw'/><source protocol='http' \
             name='/x'><host name='203.0.113.1'/></source></backingStore>\
             <target dev='vda'/></disk>",
            // Other disk sources libvirt resolves on the host.
            "<disk type='vhostuser' device='disk'><source type='unix' path='/run/x.sock'/>\
             <target dev='vdb'/></disk>",
        ]);
        for protocol in [
            "http", "https", "ftp", "ftps", "tftp", "ssh", "nbd", "iscsi", "rbd", "gluster",
            "sheepdog", "vxhs", "nfs",
        ] {
            cases.push(format!(
                "<disk type='network' device='disk'><source protocol='{protocol}' \
                 name='x/y'><host name='203.0.113.1'/></source><target dev='vdb'/></disk>"
            ));
        }
        refused(&cases, UnprotectedReason::HostDevice);
        let r = check(
            "db",
            &domain(
                "db",
                "<disk type='network'><source protocol='rbd' name='p/x'/></disk>",
            ),
        )
        .unwrap_err();
        assert!(r.detail.contains("allow_network_disks"), "{r}");
        refused(
            &strings(&[
                "<disk type='volume' device='disk'><source pool='default' volume='x'/>\
                 <target dev='vdb'/></disk>",
                "<disk type='dir' device='disk'><source dir='/var/lib/libvirt/images'/>\
                 <target dev='vdb'/></disk>",
            ]),
            UnprotectedReason::DiskPath,
        );
    }

    /// Graphics on a host socket (or a host display or GPU).
    #[test]
    fn test_graphics_sockets_refused() {
        refused(
            &strings(&[
                "<graphics type='vnc' socket='/run/libvirt/libvirt-sock'/>",
                "<graphics type='vnc'><listen type='socket' socket='/run/x.sock'/></graphics>",
                "<graphics type='vnc'><listen type='socket'/></graphics>",
                "<graphics type='spice'><listen type='socket' socket='/run/x.sock'/></graphics>",
                "<graphics type='spice' autoport='yes'><gl enable='yes' \
                 rendernode='/dev/dri/renderD128'/></graphics>",
                "<graphics type='sdl' display=':0'/>",
                "<graphics type='dbus' address='unix:path=/run/dbus/system_bus_socket'/>",
                "<graphics type='egl-headless'/>",
            ]),
            UnprotectedReason::HostDevice,
        );
        let ok = "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>\
                  <listen type='address' address='127.0.0.1'/></graphics>";
        assert_eq!(check("db", &domain("db", ok)), Ok(()));
    }

    /// Shared memory with the host or other guests, on a host socket or not.
    #[test]
    fn test_shmem_refused() {
        refused(
            &strings(&[
                "<shmem name='s'><model type='ivshmem-doorbell'/><server path='/run/x.sock'/>\
                 </shmem>",
                "<shmem name='s'><model type='ivshmem-plain'/><size unit='M'>4</size></shmem>",
            ]),
            UnprotectedReason::HostDevice,
        );
    }

    /// An RNG reading an EGD daemon's host socket or a remote one.
    #[test]
    fn test_rng_egd_refused() {
        refused(
            &strings(&[
                "<rng model='virtio'><backend model='egd' type='unix'>\
                 <source mode='connect' path='/run/x.sock'/></backend></rng>",
                "<rng model='virtio'><backend model='egd' type='tcp'>\
                 <source mode='connect' host='203.0.113.1' service='1234'/></backend></rng>",
            ]),
            UnprotectedReason::HostDevice,
        );
    }

    /// A smartcard on a host socket or a network peer.
    #[test]
    fn test_smartcard_sockets_refused() {
        refused(
            &strings(&[
                "<smartcard mode='passthrough' type='unix'><source mode='connect' \
                 path='/run/x.sock'/></smartcard>",
                "<smartcard mode='passthrough' type='tcp'><source mode='connect' \
                 host='203.0.113.1' service='2001'/></smartcard>",
                "<smartcard mode='passthrough' type='spicevmc'/>",
            ]),
            UnprotectedReason::HostDevice,
        );
    }

    /// Other devices that reach host resources.
    #[test]
    fn test_other_host_resources_refused() {
        refused(
            &strings(&[
                "<tpm model='tpm-crb'><backend type='external'><source type='unix' \
                 mode='connect' path='/run/x.sock'/></backend></tpm>",
                "<vsock model='virtio'><cid auto='yes'/></vsock>",
                "<audio id='1' type='alsa'><input dev='/dev/snd/x'/></audio>",
                "<audio id='1' type='pulseaudio' serverName='/run/user/0/pulse/native'/>",
                "<disk type='block' device='lun' rawio='yes'><source dev='/dev/shared/db'/>\
                 <target dev='sda' bus='scsi'/></disk>",
                "<disk type='block' device='disk' sgio='unfiltered'>\
                 <source dev='/dev/shared/db'/><target dev='sda' bus='scsi'/></disk>",
                "<video><model type='virtio'><acceleration accel3d='yes' \
                 rendernode='/dev/dri/renderD128'/></model></video>",
                "<video><driver name='vhostuser'/><model type='virtio'/></video>",
                "<crypto model='virtio' type='qemu'><backend model='builtin' queues='1'/>\
                 </crypto>",
                "<memory model='sgx-epc'><target><size unit='KiB'>512</size></target></memory>",
            ]),
            UnprotectedReason::HostDevice,
        );
        refused(
            &strings(&[
                "<audio id='1' type='file' path='/etc/x.wav'/>",
                "<lease><lockspace>s</lockspace><key>k</key><target path='/etc/x'/></lease>",
            ]),
            UnprotectedReason::DiskPath,
        );
    }

    #[test]
    fn test_chardev_paths_only_libvirts_own() {
        let ok = [
            // A virtio channel without a path: libvirt places the socket itself.
            "<channel type='unix'><source mode='bind'/><target type='virtio' \
             name='org.qemu.guest_agent.0'/></channel>",
            // The path libvirt generated, as a live XML shows it (dropped when defining).
            "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/\
             target/domain-4-srv/org.qemu.guest_agent.0'/><target type='virtio' \
             name='org.qemu.guest_agent.0' state='disconnected'/></channel>",
            // A pty, its live path and tty (ignored when defining).
            "<serial type='pty'><source path='/dev/pts/0'/><target port='0'/></serial>\
             <console type='pty' tty='/dev/pts/0'><source path='/dev/pts/0'/>\
             <target type='serial' port='0'/></console>",
            "<serial type='null'/><parallel type='pty'/>",
        ];
        for dev in ok {
            assert_eq!(check("db", &domain("db", dev)), Ok(()), "{dev}");
        }
        for dev in [
            // Not a virtio channel: libvirt keeps the path.
            "<serial type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/\
             target/domain-1-x/a.0'/></serial>",
            "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/\
             target/domain-1-x/a.0'/><target type='guestfwd' address='10.0.2.1' port='4600'/>\
             </channel>",
            // Not libvirt's shape (libvirt keeps these).
            "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/\
             target/x'/><target type='virtio' name='a.0'/></channel>",
            "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/\
             target/domain-1-x/../../../../../../run/libvirt/libvirt-sock'/>\
             <target type='virtio' name='a.0'/></channel>",
            "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/\
             target/domain-1-x/a/b'/><target type='virtio' name='a.0'/></channel>",
            // A pty path that is not a pseudo-terminal.
            "<serial type='pty'><source path='/dev/sda'/></serial>",
            "<console type='pty' tty='/dev/pts/../sda'/>",
            "<console type='unix' tty='/dev/pts/0'><source mode='bind'/></console>",
        ] {
            let r = check("db", &domain("db", dev)).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::HostDevice, "{dev}: {r}");
        }
    }

    #[test]
    fn test_network_disks_only_when_allowed() {
        let rules = Rules {
            storage: &allowed(),
            emulators: &emulators(),
            network_disks: true,
        };
        let net = |source: &str| {
            domain(
                "db",
                &format!(
                    "<disk type='network' device='disk'><driver name='qemu' type='raw'/>\
                     {source}<target dev='vdb'/></disk>"
                ),
            )
        };
        for src in [
            "<source protocol='rbd' name='pool/db'><host name='ceph1' port='6789'/>\
             <auth username='admin'><secret type='ceph' usage='client.admin'/></auth></source>",
            "<source protocol='iscsi' name='iqn.2013-07.com.example:iscsi-pool/1'>\
             <host name='203.0.113.1' port='3260'/><initiator><iqn name='iqn.x'/></initiator>\
             </source>",
            "<source protocol='nbd' name='db'><host name='203.0.113.1' port='10809' \
             transport='tcp'/></source>",
            "<source protocol='https' name='/images/db.iso'><host name='203.0.113.1'/>\
             <ssl verify='yes'/></source>",
        ] {
            assert_eq!(check_rules(&rules, "db", &net(src)), Ok(()), "{src}");
            assert_eq!(
                check("db", &net(src)).unwrap_err().reason,
                UnprotectedReason::HostDevice,
                "off by default: {src}"
            );
        }
        for (src, want) in [
            (
                "<source protocol='nbd' name='x'><host transport='unix' socket='/run/x.sock'/>\
                 </source>",
                UnprotectedReason::HostDevice,
            ),
            (
                "<source protocol='ssh' name='/x'><host name='203.0.113.1'/>\
                 <identity username='root' keyfile='/root/.ssh/id_rsa'/></source>",
                UnprotectedReason::HostDevice,
            ),
            (
                "<source protocol='sheepdog' name='x'><host name='203.0.113.1'/></source>",
                UnprotectedReason::HostDevice,
            ),
            (
                "<source protocol='rbd' name='p/x'><config file='/etc/ceph/other.conf'/>\
                 </source>",
                UnprotectedReason::DiskPath,
            ),
        ] {
            let r = check_rules(&rules, "db", &net(src)).unwrap_err();
            assert_eq!(r.reason, want, "{src}: {r}");
        }
    }

    #[test]
    fn test_unlisted_elements_refused() {
        for (xml, want) in [
            ("<domain type='kvm'><name>db</name><x/></domain>", "<x>"),
            (
                "<domain type='kvm'><name>db</name><devices><newdevice/></devices></domain>",
                "<newdevice>",
            ),
            (
                "<domain type='kvm'><name>db</name><os><initarg>x</initarg></os></domain>",
                "<initarg>",
            ),
            (
                "<domain type='kvm'><name>db</name><devices><disk><target dev='vda' \
                 weird='1'/></disk></devices></domain>",
                "`weird`",
            ),
            ("<domain type='lxc'><name>db</name></domain>", "lxc"),
            (
                "<domain type='kvm'><name>db</name><sysinfo type='fwcfg'/></domain>",
                "fwcfg",
            ),
            (
                "<domain type='kvm' xmlns:x='urn:x'><name>db</name><devices><disk type='file' \
                 x:type='network'/></devices></domain>",
                "two `type`",
            ),
        ] {
            let r = check("db", xml).unwrap_err();
            assert_eq!(r.reason, UnprotectedReason::BadXml, "{xml}: {r}");
            assert!(r.detail.contains(want), "{xml}: {r}");
        }
        let r = check(
            "db",
            "<domain type='kvm'><name>db</name><resource><partition>/system.slice</partition>\
             </resource></domain>",
        )
        .unwrap_err();
        assert_eq!(r.reason, UnprotectedReason::HostDevice, "{r}");
        // A backing chain cannot drive the walk arbitrarily deep.
        let deep = format!(
            "<disk type='file'><source file='/var/lib/libvirt/images/a'/>{}{}</disk>",
            "<backingStore type='file'>".repeat(allow_list::MAX_BACKING_DEPTH + 1),
            "</backingStore>".repeat(allow_list::MAX_BACKING_DEPTH + 1)
        );
        assert_eq!(
            reason("db", &domain("db", &deep)),
            UnprotectedReason::BadXml
        );
        let ok = format!(
            "<disk type='file'><source file='/var/lib/libvirt/images/a'/>{}{}</disk>",
            "<backingStore type='file'>".repeat(allow_list::MAX_BACKING_DEPTH),
            "</backingStore>".repeat(allow_list::MAX_BACKING_DEPTH)
        );
        assert_eq!(check("db", &domain("db", &ok)), Ok(()));
    }

    #[test]
    fn test_pushable() {
        assert_eq!(check_pushable("db", "<domain/>"), Ok(()));
        assert_eq!(
            check_pushable(&"n".repeat(65), "<domain/>")
                .unwrap_err()
                .reason,
            UnprotectedReason::BadName
        );
        assert_eq!(
            check_pushable("a/b", "<domain/>").unwrap_err().reason,
            UnprotectedReason::BadName
        );
        assert_eq!(
            check_pushable("db", &"x".repeat(MAX_XML_LEN + 1))
                .unwrap_err()
                .reason,
            UnprotectedReason::TooLarge
        );
        assert!(check_pushable("db", &"x".repeat(MAX_XML_LEN)).is_ok());
    }
}

/// The policy applied by the agent: on store, before a start, before a warm standby.
#[cfg(test)]
mod agent_test {
    use std::sync::Arc;

    use super::*;
    use crate::execute::{Acceptance, Agent, AgentError};
    use crate::hypervisor::fake::FakeHypervisor;
    use crate::hypervisor::GuestState;
    use crate::order::{GuestOutcome, GuestResult, Order, OrderResult};
    use crate::store::definitions::GuestDef;
    use crate::testutil::TempDir;

    const LUN: &str = "<disk type='block' device='disk'><driver name='qemu' type='raw' \
                       cache='none'/><source dev='/dev/shared/db'/><target dev='vda'/></disk>";

    fn config(dir: &TempDir, guests: &str) -> Config {
        let text = format!(
            "slot = 3\nshmc = \"127.0.0.1:7300\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
             [partner]\nslot = 4\naddress = \"127.0.0.1:7302\"\n[guests]\n{guests}",
            dir.path().display()
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn def(name: &str, xml_name: &str, devices: &str) -> GuestDef {
        GuestDef {
            name: name.into(),
            xml: format!(
                "<domain type='test'><name>{xml_name}</name><memory unit='KiB'>1000</memory>\
                 <devices>{devices}</devices></domain>"
            ),
        }
    }

    fn refusal(r: Result<bool, AgentError>) -> UnprotectedReason {
        match r {
            Err(AgentError::Refused { refusal, .. }) => refusal.reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn restart(a: &Agent<FakeHypervisor>, incident: u32) -> Vec<GuestOutcome> {
        let order = Order::RestartPartnerGuests {
            incident,
            failed_slot: 4,
            fence_confirmed: true,
            subset: None,
        };
        assert_eq!(a.accept(&order).unwrap(), Acceptance::Execute);
        match a.execute(&order, &|_: &GuestOutcome| {}).unwrap() {
            OrderResult::Guests(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_refused_definitions_never_stored_defined_started_or_kept_warm() {
        let dir = TempDir::new("policy-agent");
        let hv = Arc::new(FakeHypervisor::new(1 << 20));
        hv.add("local1", GuestState::Running, 10);
        let cfg = config(
            &dir,
            "warm_standby = [\"db\", \"evil\"]\nallowed_storage_paths = [\"/dev/shared\"]\n",
        );
        let a = Agent::new(Arc::clone(&hv), cfg).unwrap();
        // Accepted: a LUN under the allowed path, a disk-less guest.
        assert!(a.store_partner_definition(def("db", "db", LUN)).unwrap());
        assert!(a.store_partner_definition(def("web", "web", "")).unwrap());
        // A push under another name redefining this blade's own guest.
        assert_eq!(
            refusal(a.store_partner_definition(def("web2", "local1", ""))),
            UnprotectedReason::NameMismatch
        );
        // A listed warm-standby guest with a host device.
        let pci = "<hostdev mode='subsystem' type='pci'><source><address bus='0x06'/></source>\
                   </hostdev>";
        assert_eq!(
            refusal(a.store_partner_definition(def("evil", "evil", &format!("{LUN}{pci}")))),
            UnprotectedReason::HostDevice
        );
        // `web` changes into one with a disk outside the allowed paths: the older copy goes.
        let shadow = "<disk type='file'><source file='/etc/shadow'/><target dev='vda'/></disk>";
        assert_eq!(
            refusal(a.store_partner_definition(def("web", "web", shadow))),
            UnprotectedReason::DiskPath
        );
        let stored: Vec<String> = a
            .partner_definitions()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(stored, ["db"]);
        assert!(!dir.path().join("partner/web.xml").exists());
        assert!(!dir.path().join("partner/evil.xml").exists());
        let refused: Vec<String> = a.partner_refusals().into_iter().map(|(n, _)| n).collect();
        assert_eq!(refused, ["evil", "web", "web2"]);
        // Warm standby: only the accepted one.
        assert_eq!(a.ensure_standbys().unwrap(), ["db"]);
        assert_eq!(hv.state_of("evil"), None);
        // Takeover: only the accepted one; this blade's own guest untouched.
        let out = restart(&a, 1);
        let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["db"]);
        assert_eq!(out[0].result, GuestResult::Resumed);
        assert_eq!(hv.state_of("web"), None);
        assert_eq!(hv.state_of("local1"), Some(GuestState::Running));
        assert_eq!(hv.starts("local1"), 0);
    }

    #[test]
    fn test_foreign_emulator_and_own_security_label_never_stored() {
        let dir = TempDir::new("policy-emulator");
        let hv = Arc::new(FakeHypervisor::new(1 << 20));
        let cfg = config(
            &dir,
            "allowed_emulators = [\"/opt/qemu/bin/qemu-system-x86_64\"]\n",
        );
        let a = Agent::new(Arc::clone(&hv), cfg).unwrap();
        let opt = "<emulator>/opt/qemu/bin/qemu-system-x86_64</emulator>";
        assert!(a.store_partner_definition(def("db", "db", opt)).unwrap());
        // The default list no longer applies once the setting is given.
        let kvm = "<emulator>/usr/bin/kvm</emulator>";
        assert_eq!(
            refusal(a.store_partner_definition(def("web", "web", kvm))),
            UnprotectedReason::Emulator
        );
        let root = format!(
            "{opt}</devices><seclabel type='static' model='dac' relabel='no'>\
             <label>0:0</label></seclabel><devices>"
        );
        assert_eq!(
            refusal(a.store_partner_definition(def("app", "app", &root))),
            UnprotectedReason::SecurityLabel
        );
        let stored: Vec<String> = a
            .partner_definitions()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(stored, ["db"]);
        let refused: Vec<String> = a.partner_refusals().into_iter().map(|(n, _)| n).collect();
        assert_eq!(refused, ["app", "web"]);
        let out = restart(&a, 3);
        let names: Vec<&str> = out.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["db"]);
        assert_eq!(hv.state_of("web"), None);
        assert_eq!(hv.state_of("app"), None);
    }

    #[test]
    fn test_stored_definition_checked_again_under_a_narrower_configuration() {
        let dir = TempDir::new("policy-recheck");
        let hv = Arc::new(FakeHypervisor::new(1 << 20));
        {
            let wide = config(&dir, "allowed_storage_paths = [\"/dev/shared\"]\n");
            let a = Agent::new(Arc::clone(&hv), wide).unwrap();
            a.store_partner_definition(def("db", "db", LUN)).unwrap();
            a.store_partner_definition(def("web", "web", "")).unwrap();
        }
        // Restarted with the default allowed paths: db's LUN is no longer allowed.
        let a = Agent::new(Arc::clone(&hv), config(&dir, "warm_standby = [\"db\"]\n")).unwrap();
        assert_eq!(a.partner_count(), 2, "loaded as stored");
        assert!(a.ensure_standbys().unwrap().is_empty(), "no standby");
        assert!(a.standby_refusals()["db"].contains("/dev/shared/db"));
        assert_eq!(hv.state_of("db"), None);
        let out = restart(&a, 2);
        let db = out.iter().find(|o| o.name == "db").unwrap();
        match &db.result {
            GuestResult::Failed {
                reason: reason @ crate::failure::Failure::DefinitionRefused { .. },
            } => {
                assert!(
                    reason.to_string().contains("definition refused"),
                    "{reason}"
                )
            }
            other => panic!("db: {other:?}"),
        }
        assert_eq!(hv.state_of("db"), None, "never defined");
        assert_eq!(hv.state_of("web"), Some(GuestState::Running));
        // The start-up recheck moves it to the refusals (to be reported).
        let refused = a.recheck_partner_definitions();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "db");
        assert_eq!(refused[0].1.reason, UnprotectedReason::DiskPath);
        assert_eq!(a.partner_count(), 1);
        assert!(a.recheck_partner_definitions().is_empty());
        assert!(!dir.path().join("partner/db.xml").exists());
    }
}
