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

/// The allow-list: every element and attribute a partner definition may use.
mod allow_list;

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
mod test;

#[cfg(test)]
mod agent_test;
