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
//! The check parses the domain XML with a real XML parser (`roxmltree`): comments are not
//! elements, entities are resolved, and XML that does not parse is refused. It looks at every
//! `<disk>` element under `<domain><devices>` of `device='disk'` (the default) and ignores
//! CD-ROM and floppy devices.

use roxmltree::{Document, Node, ParsingOptions};

/// Most XML nodes a definition may have (entity expansion included).
const NODES_LIMIT: u32 = 100_000;

/// The first child element of `node` named `name` (no namespace).
fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace().is_none()
    })
}

/// Attribute `key` of the first child element `tag` of `node`.
fn child_attr<'a>(node: Node<'a, '_>, tag: &str, key: &str) -> Option<&'a str> {
    child(node, tag)?.attribute(key)
}

/// One disk of a guest, as a refusal names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The guest.
    pub guest: String,
    /// Its target device (`vda`), `?` if none.
    pub target: String,
    /// Its source (device, file or name), `?` if none.
    pub source: String,
}

impl std::fmt::Display for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "warm standby refused for guest `{}`: disk {} ({})",
            self.guest, self.target, self.source
        )
    }
}

/// Why a guest cannot have a warm standby, naming the guest and the disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandbyRefusal {
    /// The definition policy refuses the definition.
    #[error("warm standby refused for guest `{guest}`: {refusal}")]
    Policy {
        /// The guest.
        guest: String,
        /// The policy's refusal.
        refusal: crate::policy::Refusal,
    },
    /// The domain XML does not parse.
    #[error("warm standby refused for guest `{guest}`: its domain XML does not parse ({detail})")]
    Unparsable {
        /// The guest.
        guest: String,
        /// The parser's message.
        detail: String,
    },
    /// A disk is not a block device.
    #[error(
        "{disk} is of type '{kind}'; only raw block devices seen by both blades \
         (<disk type='block'>) can be kept open by a paused standby"
    )]
    NotBlock {
        /// The disk.
        disk: Disk,
        /// Its type.
        kind: String,
    },
    /// A disk's format is not raw.
    #[error(
        "{disk} has format '{format}'; only raw is safe (the standby would cache stale \
         {format} metadata)"
    )]
    NotRaw {
        /// The disk.
        disk: Disk,
        /// Its format.
        format: String,
    },
    /// A disk is cached by the host.
    #[error("{disk} uses cache='{cache}'; only cache='none' is safe (no host page cache on the standby)")]
    Cached {
        /// The disk.
        disk: Disk,
        /// Its cache mode.
        cache: String,
    },
    /// A disk is shareable.
    #[error("{disk} is <shareable/>: virtlockd would not stop a second writer")]
    Shareable {
        /// The disk.
        disk: Disk,
    },
    /// The guest has no disk.
    #[error(
        "warm standby refused for guest `{guest}`: it has no disk, so virtlockd could not \
         refuse a resume while the original still runs"
    )]
    NoDisk {
        /// The guest.
        guest: String,
    },
}

/// Whether the disks of `guest` (domain XML `xml`) allow a warm standby.
pub fn check_disks(guest: &str, xml: &str) -> Result<(), StandbyRefusal> {
    let opts = ParsingOptions {
        allow_dtd: true,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(xml, opts).map_err(|e| StandbyRefusal::Unparsable {
        guest: guest.to_owned(),
        detail: e.to_string(),
    })?;
    let disks_of = doc
        .root_element()
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "devices")
        .flat_map(|d| d.children())
        .filter(|n| {
            n.is_element() && n.tag_name().name() == "disk" && n.tag_name().namespace().is_none()
        });
    let mut disks = 0usize;
    for node in disks_of {
        let device = node.attribute("device").unwrap_or("disk");
        if device != "disk" {
            continue;
        }
        disks += 1;
        let kind = node.attribute("type").unwrap_or("file");
        let source = child_attr(node, "source", "dev")
            .or_else(|| child_attr(node, "source", "file"))
            .or_else(|| child_attr(node, "source", "name"))
            .unwrap_or("?");
        let disk = Disk {
            guest: guest.to_owned(),
            target: child_attr(node, "target", "dev").unwrap_or("?").to_owned(),
            source: source.to_owned(),
        };
        if kind != "block" {
            return Err(StandbyRefusal::NotBlock {
                disk,
                kind: kind.to_owned(),
            });
        }
        let format = child_attr(node, "driver", "type").unwrap_or("raw");
        if format != "raw" {
            return Err(StandbyRefusal::NotRaw {
                disk,
                format: format.to_owned(),
            });
        }
        let cache = child_attr(node, "driver", "cache").unwrap_or("default");
        if cache != "none" {
            return Err(StandbyRefusal::Cached {
                disk,
                cache: cache.to_owned(),
            });
        }
        if child(node, "shareable").is_some() {
            return Err(StandbyRefusal::Shareable { disk });
        }
    }
    if disks == 0 {
        return Err(StandbyRefusal::NoDisk {
            guest: guest.to_owned(),
        });
    }
    Ok(())
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
        let e = check_disks("db", &domain(qcow2)).unwrap_err().to_string();
        assert!(e.contains("guest `db`"), "{e}");
        assert!(e.contains("vda (/var/lib/images/db.qcow2)"), "{e}");
        assert!(e.contains("type 'file'"), "{e}");
        let block_qcow2 = BLOCK.replace("type='raw'", "type='qcow2'");
        let e = check_disks("db", &domain(&block_qcow2))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("format 'qcow2'") && e.contains("/dev/shared/db"),
            "{e}"
        );
        let cached = BLOCK.replace(" cache='none'", "");
        let e = check_disks("db", &domain(&cached)).unwrap_err().to_string();
        assert!(e.contains("cache='default'"), "{e}");
        let writeback = BLOCK.replace("cache='none'", "cache='writeback'");
        assert!(check_disks("db", &domain(&writeback))
            .unwrap_err()
            .to_string()
            .contains("cache='writeback'"));
        let shared = BLOCK.replace("</disk>", "<shareable/></disk>");
        assert!(check_disks("db", &domain(&shared))
            .unwrap_err()
            .to_string()
            .contains("shareable"));
        // The second disk is the bad one.
        let two = format!("{BLOCK}{qcow2}");
        assert!(check_disks("db", &domain(&two)).is_err());
        let e = check_disks("db", &domain("")).unwrap_err().to_string();
        assert!(e.contains("no disk"), "{e}");
        let net = "<disk type='network' device='disk'><driver name='qemu' type='raw' \
                   cache='none'/><source protocol='rbd' name='pool/db'/><target dev='vda'/></disk>";
        assert!(check_disks("db", &domain(net))
            .unwrap_err()
            .to_string()
            .contains("type 'network'"));
    }

    #[test]
    fn test_parser_edges() {
        // Truncated XML: no panic, a refusal.
        assert!(check_disks("x", "<domain><devices><disk type='block'").is_err());
        // Double quotes, spaces around `=`.
        let spaced = BLOCK.replace("type='block'", "type = \"block\"");
        assert_eq!(check_disks("db", &domain(&spaced)), Ok(()));
        // `<disks>` is not a disk.
        let e = check_disks("db", &domain("<disks type='block'/>"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no disk"), "{e}");
    }

    #[test]
    fn test_comments_do_not_fool_the_check() {
        // The only disk is inside a comment: there is no disk, refused.
        let hidden = format!("<!-- {BLOCK} -->");
        let e = check_disks("db", &domain(&hidden)).unwrap_err().to_string();
        assert!(e.contains("no disk"), "{e}");
        // A file disk commented out next to a safe block disk: only the real one counts.
        let commented_file = "<!-- <disk type='file' device='disk'><source file='/img/db.qcow2'/>\
                              <target dev='vdb'/></disk> -->";
        assert_eq!(
            check_disks("db", &domain(&format!("{BLOCK}{commented_file}"))),
            Ok(())
        );
        // A real file disk after a comment that mentions `</disk>`.
        let tricky = "<disk type='file' device='disk'><!-- </disk> --><source file='/img/x.img'/>\
                      <target dev='vdb'/><driver name='qemu' type='raw' cache='none'/></disk>";
        let e = check_disks("db", &domain(&format!("{BLOCK}{tricky}")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vdb (/img/x.img)") && e.contains("type 'file'"),
            "{e}"
        );
    }

    #[test]
    fn test_entities_are_resolved() {
        // The disk's type and path given through entities: judged by their values.
        let dtd = "<!DOCTYPE domain [<!ENTITY kind \"file\"><!ENTITY img \"/img/db.qcow2\">]>";
        let xml = format!(
            "{dtd}{}",
            domain(
                "<disk type='&kind;' device='disk'><driver name='qemu' type='raw' cache='none'/>\
                 <source file='&img;'/><target dev='vda'/></disk>"
            )
        );
        let e = check_disks("db", &xml).unwrap_err().to_string();
        assert!(
            e.contains("vda (/img/db.qcow2)") && e.contains("type 'file'"),
            "{e}"
        );
        // A safe disk spelled with character references is still safe.
        let xml = domain(&BLOCK.replace("'block'", "'&#98;lock'"));
        assert_eq!(check_disks("db", &xml), Ok(()));
        // A disk whose cache comes from an entity.
        let dtd = "<!DOCTYPE domain [<!ENTITY c \"writeback\">]>";
        let xml = format!("{dtd}{}", domain(&BLOCK.replace("'none'", "'&c;'")));
        assert!(check_disks("db", &xml)
            .unwrap_err()
            .to_string()
            .contains("cache='writeback'"));
    }
}
