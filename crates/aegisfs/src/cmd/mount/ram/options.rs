//! The `-o` options of `aegisfs mount --ram`, read as tmpfs reads them.
//!
//! Its job: turn the option list into the filesystem's limits and root
//! directory ([`RamOptions`]) and the FUSE mount's configuration, or into
//! one error naming the option. The FUSE options (`allow_other`,
//! `noatime`, `fsname=` …) go through [`aegis_fuse::parse_options`] as for
//! an image; on top come tmpfs's `size`, `nr_inodes`, `mode`, `uid` and
//! `gid`. Anything else — the image mount's `nolog`, tmpfs's `huge=` — is
//! refused rather than ignored.
//!
//! Invariants: the size is a whole number of blocks (`ramfs`'s chunk,
//! which is also the block `statfs` reports, so `df` shows exactly the
//! size asked for, rounded up to 4 KiB as tmpfs rounds up to pages) and
//! at least one block; there is at least one inode (the root); later
//! options override earlier ones. Zero, tmpfs's "unlimited", is refused:
//! a RAM mount without a limit could take all of memory.

use aegis_fuse::{parse_options, OptionError, ParsedOptions};
use aegis_vfs::ramfs::CHUNK;

/// The unit of `size`: what `ramfs` allocates and `statfs` counts in.
pub(crate) const BLOCK: u64 = CHUNK;

/// The options only a RAM mount takes, passed through the FUSE parser.
const RAM_OPTIONS: &[&str] = &["size", "nr_inodes", "mode", "uid", "gid"];

/// What the filesystem options choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RamOptions {
    /// The size limit in bytes, a multiple of [`BLOCK`].
    pub max_bytes: u64,
    /// Inodes the filesystem may hold, the root included.
    pub max_inodes: u64,
    /// The root directory's permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What the defaults depend on: the machine and the mounting user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Host {
    /// Physical memory in bytes (0 if unknown).
    pub ram_bytes: u64,
    pub uid: u32,
    pub gid: u32,
}

impl Host {
    /// This machine and this process's user.
    pub(crate) fn current() -> Host {
        // SAFETY: sysconf, getuid and getgid have no preconditions.
        let (pages, page, uid, gid) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
                libc::getuid(),
                libc::getgid(),
            )
        };
        let ram_bytes = u64::try_from(pages)
            .unwrap_or(0)
            .saturating_mul(u64::try_from(page).unwrap_or(0));
        Host {
            ram_bytes,
            uid,
            gid,
        }
    }
}

/// Why a RAM mount's options were refused; each names the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RamOptionError {
    #[error("mount option '{name}': {reason}")]
    Invalid { name: String, reason: String },
    #[error("mount option '{0}' needs a value ({0}=...)")]
    MissingValue(String),
    #[error("mount option '{0}' does not apply to a RAM mount: {1}")]
    NotForRam(&'static str, &'static str),
    #[error(transparent)]
    Mount(#[from] OptionError),
}

/// Parse every `-o` list of a RAM mount. Returns the filesystem's options
/// and the FUSE options (`fsname` defaults to `aegisfs-ram`).
pub(crate) fn parse(
    options: &[String],
    host: &Host,
) -> Result<(RamOptions, ParsedOptions), RamOptionError> {
    let mut parsed = parse_options(&options.join(","), RAM_OPTIONS)?;
    if parsed.mount.fuseblk == Some(true) {
        // fuseblk needs a block device as the mount's source; a RAM mount
        // has none, and nothing for sync(2) to make durable either.
        return Err(RamOptionError::NotForRam(
            "fuseblk",
            "it has no block device (it is always plain fuse)",
        ));
    }
    let mut ram = defaults(host);
    for o in &parsed.fs {
        let Some(&name) = RAM_OPTIONS.iter().find(|n| **n == o.name) else {
            continue; // ro, rw, the atime policy: the kernel's business.
        };
        let value = match o.value.as_deref() {
            Some(v) if !v.is_empty() => v,
            _ => return Err(RamOptionError::MissingValue(o.name.clone())),
        };
        apply(&mut ram, name, value, host).map_err(|reason| RamOptionError::Invalid {
            name: name.to_string(),
            reason,
        })?;
    }
    if parsed.mount.fsname == "aegisfs" {
        parsed.mount.fsname = "aegisfs-ram".to_string();
    }
    Ok((ram, parsed))
}

/// tmpfs's defaults: half of physical memory, as many inodes as half of
/// its pages, the root directory `1777` owned by the mounting user.
fn defaults(host: &Host) -> RamOptions {
    let half = host.ram_bytes / 2;
    RamOptions {
        max_bytes: (half / BLOCK).max(1) * BLOCK,
        max_inodes: (half / BLOCK).max(1),
        mode: 0o1777,
        uid: host.uid,
        gid: host.gid,
    }
}

/// Apply one RAM option; the error is the reason, naming the value.
fn apply(ram: &mut RamOptions, name: &str, value: &str, host: &Host) -> Result<(), String> {
    match name {
        "size" => ram.max_bytes = parse_size(value, host.ram_bytes)?,
        "nr_inodes" => ram.max_inodes = parse_inodes(value)?,
        "mode" => ram.mode = parse_mode(value)?,
        "uid" => ram.uid = parse_id(value)?,
        "gid" => ram.gid = parse_id(value)?,
        _ => unreachable!("only RAM_OPTIONS reach here"),
    }
    Ok(())
}

/// A size as tmpfs takes it: bytes, `100k`, `512M`, `1G` … (the CLI's
/// sizes, binary units), or `N%` of `ram_bytes`; rounded up to whole
/// blocks. Zero is refused.
pub(crate) fn parse_size(value: &str, ram_bytes: u64) -> Result<u64, String> {
    let bytes = match value.strip_suffix('%') {
        Some(pct) => percent_of(pct, ram_bytes)
            .ok_or_else(|| format!("'{value}' is not a percentage of RAM (examples: 10%, 50%)"))?,
        None => crate::units::parse_size(value)?,
    };
    if bytes == 0 {
        return Err(format!(
            "'{value}' is no space; a RAM mount needs a limit (examples: 100k, 512M, 1G, 50%)"
        ));
    }
    bytes
        .div_ceil(BLOCK)
        .checked_mul(BLOCK)
        .ok_or_else(|| format!("'{value}' is too large"))
}

/// `pct` percent of `ram_bytes`, if `pct` is a whole number (tmpfs takes
/// no fractions) and the result fits.
fn percent_of(pct: &str, ram_bytes: u64) -> Option<u64> {
    if pct.is_empty() || !pct.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u128 = pct.parse().ok()?;
    u64::try_from(u128::from(ram_bytes).checked_mul(n)? / 100).ok()
}

/// An inode count: a number, with `k`, `m`, `g` as tmpfs allows. At least
/// one, for the root.
fn parse_inodes(value: &str) -> Result<u64, String> {
    match crate::units::parse_size(value) {
        Ok(0) => Err(format!(
            "'{value}': at least one inode is needed (the root)"
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{value}' is not an inode count (examples: 1000, 64k)"
        )),
    }
}

/// Permission bits in octal, `0` to `7777`.
fn parse_mode(value: &str) -> Result<u32, String> {
    match u32::from_str_radix(value, 8) {
        Ok(m) if m <= 0o7777 && !value.starts_with('+') => Ok(m),
        _ => Err(format!("'{value}' is not an octal mode (0 to 7777)")),
    }
}

/// A numeric user or group id (tmpfs takes no names either).
fn parse_id(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(id) if id != u32::MAX && !value.starts_with('+') => Ok(id),
        _ => Err(format!("'{value}' is not a numeric id (0 to 4294967294)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const HOST: Host = Host {
        ram_bytes: 8 * GIB,
        uid: 1000,
        gid: 100,
    };

    fn opts(list: &[&str]) -> Result<RamOptions, RamOptionError> {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        parse(&list, &HOST).map(|(r, _)| r)
    }

    #[test]
    fn size_forms() {
        let ram = 8 * GIB;
        assert_eq!(parse_size("8M", ram), Ok(8 << 20));
        assert_eq!(parse_size("512m", ram), Ok(512 << 20));
        assert_eq!(parse_size("1G", ram), Ok(GIB));
        assert_eq!(parse_size("100k", ram), Ok(100 << 10));
        assert_eq!(parse_size("8192", ram), Ok(8192));
        assert_eq!(parse_size("50%", ram), Ok(4 * GIB));
        assert_eq!(parse_size("100%", ram), Ok(8 * GIB));
        assert_eq!(parse_size("1%", 1000 * BLOCK), Ok(10 * BLOCK));
    }

    #[test]
    fn sizes_round_up_to_whole_blocks() {
        assert_eq!(parse_size("1", GIB), Ok(BLOCK));
        assert_eq!(parse_size("4097", GIB), Ok(2 * BLOCK));
        assert_eq!(parse_size("1000k", GIB), Ok(1000 << 10));
        // 1% of 1 MiB is 10485.76 bytes: three blocks.
        assert_eq!(parse_size("1%", 1 << 20), Ok(3 * BLOCK));
    }

    #[test]
    fn bad_sizes_name_the_value() {
        for bad in [
            "abc",
            "",
            "0",
            "0%",
            "%",
            "x%",
            "-5%",
            "1.5%",
            "50 %",
            "G",
            "4X",
            "-1",
            "99999999999999999999T",
            "18446744073709551615",
        ] {
            let e = parse_size(bad, 8 * GIB).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_are_tmpfs_defaults() {
        let r = opts(&[]).unwrap();
        assert_eq!(r.max_bytes, 4 * GIB);
        assert_eq!(r.max_inodes, 4 * GIB / BLOCK);
        assert_eq!((r.mode, r.uid, r.gid), (0o1777, 1000, 100));
        // Memory unknown: still one block, one inode, never zero.
        let none = Host {
            ram_bytes: 0,
            ..HOST
        };
        let (r, _) = parse(&[], &none).unwrap();
        assert_eq!((r.max_bytes, r.max_inodes), (BLOCK, 1));
    }

    #[test]
    fn ram_options_and_fuse_options_together() {
        let list = [
            "size=8M,nr_inodes=1k",
            "mode=0755,uid=0,gid=0",
            "allow_other",
        ];
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        let (r, p) = parse(&list, &HOST).unwrap();
        assert_eq!(
            r,
            RamOptions {
                max_bytes: 8 << 20,
                max_inodes: 1024,
                mode: 0o755,
                uid: 0,
                gid: 0,
            }
        );
        assert_eq!(p.mount.access, aegis_fuse::AccessPolicy::AllowOther);
        assert_eq!(p.mount.fsname, "aegisfs-ram");
        assert_eq!(p.mount.blkdev, None);
        // Later options win; fsname= is kept.
        let r = opts(&["size=1M,size=2M", "fsname=scratch"]).unwrap();
        assert_eq!(r.max_bytes, 2 << 20);
        let list = vec!["fsname=scratch,nofuseblk".to_string()];
        assert_eq!(parse(&list, &HOST).unwrap().1.mount.fsname, "scratch");
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        for (bad, needle) in [
            ("size=abc", "'size'"),
            ("size", "'size' needs a value"),
            ("size=", "'size' needs a value"),
            ("nr_inodes=0", "'nr_inodes'"),
            ("nr_inodes=many", "'nr_inodes'"),
            ("mode=0888", "'mode'"),
            ("mode=17777", "'mode'"),
            ("uid=root", "'uid'"),
            ("gid=-1", "'gid'"),
            ("huge=always", "'huge=always'"),
            ("nolog", "'nolog'"),
            ("fuseblk", "'fuseblk'"),
            ("threads=0", "'threads'"),
        ] {
            let e = opts(&[bad]).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
    }
}
