//! Warm standby: which guest definitions may be kept started-paused on the partner.
//!
//! A paused standby has QEMU running and its disks open on the partner while the original
//! runs. That is safe only when every disk is a raw block device both blades see (a shared
//! LUN) opened with `cache='none'`: no host page cache and no image metadata that the standby
//! could hold stale. A file-backed disk is refused (on one host QEMU's own image lock refuses
//! the second opener; on two hosts a file image has no such guard), and so is qcow2 (its
//! metadata is cached by the standby's QEMU). A guest without any disk is refused too:
//! virtlockd protects disks, so with none the resume of a standby could never be refused
//! while the original still runs.
//!
//! The check reads libvirt's domain XML with a small scanner (libvirt writes well-formed XML
//! with quoted attributes); it looks at every `<disk>` element of `device='disk'` (the
//! default) and ignores CD-ROM and floppy devices.

/// Why a guest cannot have a warm standby, naming the guest and the disk.
pub fn check_disks(guest: &str, xml: &str) -> Result<(), String> {
    let mut disks = 0usize;
    let mut rest = xml;
    while let Some(start) = find_tag(rest, "disk") {
        let tail = &rest[start..];
        let open_end = tail.find('>').unwrap_or(tail.len());
        let open = &tail[..open_end];
        let self_closing = open.ends_with('/');
        let body_end = if self_closing {
            open_end
        } else {
            tail.find("</disk>").unwrap_or(tail.len())
        };
        let body = &tail[open_end.min(body_end)..body_end];
        rest = &tail[body_end..];
        let device = attr(open, "device").unwrap_or("disk");
        if device != "disk" {
            continue;
        }
        disks += 1;
        let kind = attr(open, "type").unwrap_or("file");
        let target = tag_attr(body, "target", "dev").unwrap_or("?");
        let source = tag_attr(body, "source", "dev")
            .or_else(|| tag_attr(body, "source", "file"))
            .or_else(|| tag_attr(body, "source", "name"))
            .unwrap_or("?");
        let what = format!("warm standby refused for guest `{guest}`: disk {target} ({source})");
        if kind != "block" {
            return Err(format!(
                "{what} is of type '{kind}'; only raw block devices seen by both blades \
                 (<disk type='block'>) can be kept open by a paused standby"
            ));
        }
        let format = tag_attr(body, "driver", "type").unwrap_or("raw");
        if format != "raw" {
            return Err(format!(
                "{what} has format '{format}'; only raw is safe (the standby would cache \
                 stale {format} metadata)"
            ));
        }
        let cache = tag_attr(body, "driver", "cache").unwrap_or("default");
        if cache != "none" {
            return Err(format!(
                "{what} uses cache='{cache}'; only cache='none' is safe (no host page cache \
                 on the standby)"
            ));
        }
        if body.contains("<shareable") {
            return Err(format!(
                "{what} is <shareable/>: virtlockd would not stop a second writer"
            ));
        }
    }
    if disks == 0 {
        return Err(format!(
            "warm standby refused for guest `{guest}`: it has no disk, so virtlockd could not \
             refuse a resume while the original still runs"
        ));
    }
    Ok(())
}

/// Byte offset of the next `<name` start tag (not `<name2`) in `s`.
fn find_tag(s: &str, name: &str) -> Option<usize> {
    let pat = format!("<{name}");
    let mut from = 0;
    while let Some(i) = s[from..].find(&pat) {
        let at = from + i;
        match s[at + pat.len()..].chars().next() {
            Some(c) if c.is_whitespace() || c == '>' || c == '/' => return Some(at),
            _ => from = at + pat.len(),
        }
    }
    None
}

/// Value of attribute `key` in the start tag text `tag` (quoted with ' or ").
fn attr<'a>(tag: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = tag[from..].find(key) {
        let at = from + i;
        from = at + key.len();
        let before_ok = tag[..at].ends_with(|c: char| c.is_whitespace());
        let after = tag[at + key.len()..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value = after[1..].trim_start();
        let quote = value.chars().next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let end = value[1..].find(quote)?;
        return Some(&value[1..1 + end]);
    }
    None
}

/// Attribute `key` of the first `<tag ...>` inside `body`.
fn tag_attr<'a>(body: &'a str, tag: &str, key: &str) -> Option<&'a str> {
    let start = find_tag(body, tag)?;
    let t = &body[start..];
    let end = t.find('>').unwrap_or(t.len());
    attr(&t[..end], key)
}

#[cfg(test)]
mod test {
    use super::*;

    fn domain(disks: &str) -> String {
        format!(
            "<domain type='qemu'><name>db</name><devices>{disks}\
             <controller type='usb' model='none'/></devices></domain>"
        )
    }

    const BLOCK: &str = "<disk type='block' device='disk'><driver name='qemu' type='raw' \
                         cache='none'/><source dev='/dev/shared/db'/><target dev='vda' \
                         bus='virtio'/></disk>";

    #[test]
    fn test_raw_block_cache_none_accepted() {
        assert_eq!(check_disks("db", &domain(BLOCK)), Ok(()));
        let with_cdrom = format!(
            "{BLOCK}<disk type=\"file\" device=\"cdrom\"><driver name=\"qemu\" type=\"raw\"/>\
             <target dev=\"hdc\" bus=\"ide\"/><readonly/></disk>"
        );
        assert_eq!(check_disks("db", &domain(&with_cdrom)), Ok(()));
    }

    #[test]
    fn test_unsafe_disks_refused_with_guest_and_disk() {
        let qcow2 = "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
                     <source file='/var/lib/images/db.qcow2'/><target dev='vda' bus='virtio'/></disk>";
        let e = check_disks("db", &domain(qcow2)).unwrap_err();
        assert!(e.contains("guest `db`"), "{e}");
        assert!(e.contains("vda (/var/lib/images/db.qcow2)"), "{e}");
        assert!(e.contains("type 'file'"), "{e}");
        let block_qcow2 = BLOCK.replace("type='raw'", "type='qcow2'");
        let e = check_disks("db", &domain(&block_qcow2)).unwrap_err();
        assert!(
            e.contains("format 'qcow2'") && e.contains("/dev/shared/db"),
            "{e}"
        );
        let cached = BLOCK.replace(" cache='none'", "");
        let e = check_disks("db", &domain(&cached)).unwrap_err();
        assert!(e.contains("cache='default'"), "{e}");
        let writeback = BLOCK.replace("cache='none'", "cache='writeback'");
        assert!(check_disks("db", &domain(&writeback))
            .unwrap_err()
            .contains("cache='writeback'"));
        let shared = BLOCK.replace("</disk>", "<shareable/></disk>");
        assert!(check_disks("db", &domain(&shared))
            .unwrap_err()
            .contains("shareable"));
        // The second disk is the bad one.
        let two = format!("{BLOCK}{qcow2}");
        assert!(check_disks("db", &domain(&two)).is_err());
        let e = check_disks("db", &domain("")).unwrap_err();
        assert!(e.contains("no disk"), "{e}");
        let net = "<disk type='network' device='disk'><driver name='qemu' type='raw' \
                   cache='none'/><source protocol='rbd' name='pool/db'/><target dev='vda'/></disk>";
        assert!(check_disks("db", &domain(net))
            .unwrap_err()
            .contains("type 'network'"));
    }

    #[test]
    fn test_scanner_edges() {
        assert_eq!(find_tag("<disks><disk type='a'>", "disk"), Some(7));
        assert_eq!(attr("<disk xtype='a' type='b'", "type"), Some("b"));
        assert_eq!(attr("<disk type = \"c\"", "type"), Some("c"));
        assert_eq!(attr("<disk type=c", "type"), None);
        // Truncated XML: no panic, a refusal.
        assert!(check_disks("x", "<domain><devices><disk type='block'").is_err());
    }
}
