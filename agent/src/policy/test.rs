//! The definition policy's checks, one concern at a time.

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
        include_str!("../../tests/fixtures/libvirt-9.0/g1.inactive.xml"),
    ),
    (
        "g1",
        include_str!("../../tests/fixtures/libvirt-9.0/g1.live.xml"),
    ),
    (
        "g2",
        include_str!("../../tests/fixtures/libvirt-9.0/g2.inactive.xml"),
    ),
    (
        "g2",
        include_str!("../../tests/fixtures/libvirt-9.0/g2.live.xml"),
    ),
    (
        "g3",
        include_str!("../../tests/fixtures/libvirt-9.0/g3.live.xml"),
    ),
    (
        "srv",
        include_str!("../../tests/fixtures/libvirt-9.0/srv.xml"),
    ),
    (
        "srv",
        include_str!("../../tests/fixtures/libvirt-9.0/srv.inactive.xml"),
    ),
    (
        "srv",
        include_str!("../../tests/fixtures/libvirt-9.0/srv.live.xml"),
    ),
];

#[test]
fn test_real_libvirt_xml_accepted() {
    for (name, xml) in REAL_XML {
        assert_eq!(check(name, xml), Ok(()), "{name}: {xml}");
    }
    // The rig's template as the system tests push it (no disk, an image, a LUN).
    let template = include_str!("../../../tests/support/guest.xml")
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
