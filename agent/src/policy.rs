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
//! - it passes a host device through: `<hostdev>`, `<redirdev>`, `<interface type='hostdev'>`,
//!   an NVMe disk (`<disk type='nvme'>`), a host smartcard, an evdev/passthrough `<input>`, a
//!   passthrough TPM, or an RNG reading another device than `/dev/random`/`/dev/urandom`
//!   ([`UnprotectedReason::HostDevice`]);
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
//! content of `<metadata>` (opaque to libvirt) is exempt from the device and path checks, not
//! from the driver-namespace check.

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

/// Checks a definition pushed (or stored) under `pushed_name` against the policy of `cfg`
/// (see the module documentation). Ok when it may be stored, defined and started here.
pub fn check_definition(cfg: &Config, pushed_name: &str, xml: &str) -> Result<(), Refusal> {
    check_xml(
        &cfg.allowed_storage_paths,
        &cfg.allowed_emulators,
        pushed_name,
        xml,
    )
}

/// [`check_definition`] with the allowed storage prefixes and emulators given directly.
pub fn check_xml(
    allowed: &[PathBuf],
    emulators: &[PathBuf],
    pushed_name: &str,
    xml: &str,
) -> Result<(), Refusal> {
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
        check_paths(node, allowed)?;
        check_emulator(node, emulators)?;
        check_seclabel(node, root)?;
    }
    Ok(())
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
                    <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/c.sock'/>\
                    <target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
                    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\
                    <disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>\
                    <disk type='network' device='disk'><source protocol='rbd' name='pool/db'/>\
                    <target dev='vdc'/></disk>\
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
        // Without the namespace, `commandline` is an unknown element libvirt ignores.
        assert_eq!(
            check("db", "<domain><name>db</name><commandline/></domain>"),
            Ok(())
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
    use crate::hypervisor::fake::FakeHypervisor;
    use crate::hypervisor::GuestState;
    use crate::logic::{Acceptance, Agent, AgentError};
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
            GuestResult::Failed { reason } => {
                assert!(reason.contains("definition refused"), "{reason}")
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
