//! POSIX ACLs and privilege bits through a real FUSE mount, with the
//! standard tools (`setfacl`, `getfacl` from the `acl` package, which CI
//! installs; `truncate`, `fallocate`) and another user (`nobody`, uid
//! 65534) to be refused or let in, as on ext4.

use super::*;

const NOBODY: u32 = 65534;

/// Run `script` with `sh -c` as nobody (no supplementary groups).
fn as_nobody(script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap()
}

/// Run a tool as root; it must succeed. Returns its stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

/// A mount nobody can reach: the directories above it traversable.
fn reachable_mount() -> Mount {
    let m = Mount::new("128M");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    for a in m.mnt.ancestors().skip(1).take(2) {
        let mode = fs::metadata(a).unwrap().permissions().mode();
        fs::set_permissions(a, fs::Permissions::from_mode(mode | 0o711)).unwrap();
    }
    m
}

#[test]
fn a_named_user_entry_grants_what_the_mode_bits_deny() {
    if !fuse_available() {
        return;
    }
    let m = reachable_mount();
    let f = m.p("secret");
    fs::write(&f, b"for nobody").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let cat = format!("cat {}", f.display());
    assert!(
        !as_nobody(&cat).status.success(),
        "mode 0600 keeps nobody out"
    );
    let fp = f.to_str().unwrap();
    run("setfacl", &["-m", "u:nobody:r", fp]);
    assert_eq!(mode(&f), 0o640, "setfacl sets the group bits to the mask");
    let out = as_nobody(&cat);
    assert_eq!(out.stdout, b"for nobody", "{out:?}");
    let append = format!("echo more >> {}", f.display());
    assert!(!as_nobody(&append).status.success(), "r only");
    run("setfacl", &["-m", "u:nobody:rw", fp]);
    assert_eq!(mode(&f), 0o660);
    assert!(as_nobody(&append).status.success());
    let acl = run("getfacl", &["-cp", fp]);
    assert!(
        acl.contains("user:nobody:rw-") && acl.contains("mask::rw-"),
        "{acl}"
    );
    // chmod rewrites the mask: the named entry loses its effect.
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let acl = run("getfacl", &["-cp", fp]);
    assert!(acl.contains("mask::---"), "{acl}");
    assert!(!as_nobody(&cat).status.success());
    // Removing the ACL leaves the mode alone, and the named entry gone.
    run("setfacl", &["-b", fp]);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o660)).unwrap();
    assert!(!as_nobody(&cat).status.success());
    m.finish();
}

#[test]
fn a_default_acl_is_inherited_and_replaces_the_umask() {
    if !fuse_available() {
        return;
    }
    let m = reachable_mount();
    fs::create_dir(m.p("plain")).unwrap();
    fs::create_dir(m.p("shared")).unwrap();
    let shared = m.p("shared");
    run(
        "setfacl",
        &["-d", "-m", "u:nobody:rwx", shared.to_str().unwrap()],
    );
    let script = format!(
        "umask 077 && cd {} && touch plain/f shared/f && mkdir plain/sub shared/sub",
        m.mnt.display()
    );
    run("sh", &["-c", &script]);
    assert_eq!(
        mode(&m.p("plain/f")),
        0o600,
        "the umask applies without a default ACL"
    );
    assert_eq!(mode(&m.p("plain/sub")), 0o700);
    // user::rwx group::r-x mask::rwx other::r-x masked by 0666 and 0777.
    assert_eq!(
        mode(&m.p("shared/f")),
        0o664,
        "no umask under a default ACL"
    );
    assert_eq!(mode(&m.p("shared/sub")), 0o775);
    let f = run("getfacl", &["-cp", m.p("shared/f").to_str().unwrap()]);
    assert!(
        f.contains("user:nobody:rwx") && !f.contains("default:"),
        "{f}"
    );
    let sub = run("getfacl", &["-cp", m.p("shared/sub").to_str().unwrap()]);
    assert!(sub.contains("default:user:nobody:rwx"), "{sub}");
    // The inherited entry lets nobody write where the mode bits deny it.
    let out = as_nobody(&format!(
        "echo x > {}",
        m.p("shared/sub/by-nobody").display()
    ));
    assert!(out.status.success(), "{out:?}");
    let out = as_nobody(&format!(
        "echo x > {}",
        m.p("plain/sub/by-nobody").display()
    ));
    assert!(!out.status.success());
    m.finish();
}

/// The length of xattr `name` of `p`, or the errno.
fn xattr_len(p: &Path, name: &str) -> Result<usize, i32> {
    let name = CString::new(name).unwrap();
    let r = unsafe { libc::getxattr(cstr(p).as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    usize::try_from(r).map_err(|_| errno_of(std::io::Error::last_os_error()))
}

fn acl_bytes(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn bad_acl_values_are_refused() {
    if !fuse_available() {
        return;
    }
    let m = reachable_mount();
    let f = m.p("f");
    fs::write(&f, b"x").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let u = u32::MAX;
    let access = "system.posix_acl_access";
    let good = acl_bytes(&[
        (1, 6, u),
        (2, 6, NOBODY),
        (4, 4, u),
        (0x10, 6, u),
        (0x20, 4, u),
    ]);
    let mut ragged = good.clone();
    ragged.push(0);
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, access, &ragged),
        libc::EINVAL
    );
    let no_mask = acl_bytes(&[(1, 6, u), (2, 6, NOBODY), (4, 4, u), (0x20, 4, u)]);
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, access, &no_mask),
        libc::EINVAL
    );
    let bad_tag = acl_bytes(&[(1, 6, u), (0x40, 6, u), (4, 4, u), (0x20, 4, u)]);
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, access, &bad_tag),
        libc::EINVAL
    );
    let mut big = vec![(1, 6, u)];
    big.extend((0..600).map(|i| (2u16, 4u16, 1000 + i)));
    big.extend([(4, 4, u), (0x10, 4, u), (0x20, 4, u)]);
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, access, &acl_bytes(&big)),
        libc::E2BIG
    );
    let default = "system.posix_acl_default";
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, default, &good),
        libc::EACCES
    );
    assert_eq!(mode(&f), 0o644, "nothing changed");
    // nobody does not own the file.
    let out = as_nobody(&format!("setfacl -m u:nobody:rw {}", f.display()));
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, access, &good),
        0
    );
    assert_eq!(mode(&f), 0o664);
    m.finish();
}

/// A file owned by nobody, 16 KiB, with permission bits `bits`.
fn fresh(f: &Path, bits: u32) {
    fs::write(f, vec![7u8; 16384]).unwrap();
    std::os::unix::fs::chown(f, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(f, fs::Permissions::from_mode(bits)).unwrap();
    assert_eq!(mode(f), bits);
}

/// The five ways of changing a file that drop privileges, on `fp`.
fn changes(fp: &str) -> [String; 5] {
    [
        format!("echo x >> {fp}"),
        format!("truncate -s 100 {fp}"),
        // An O_TRUNC open: the open itself truncates (atomic O_TRUNC).
        format!(": > {fp}"),
        format!("fallocate -l 65536 {fp}"),
        format!("fallocate -p -o 0 -l 4096 {fp}"),
    ]
}

#[test]
fn writes_truncates_fallocate_and_chown_drop_privilege_bits() {
    if !fuse_available() {
        return;
    }
    let m = reachable_mount();
    let f = m.p("tool");
    let fp = f.to_str().unwrap().to_string();
    for op in changes(&fp) {
        fresh(&f, 0o6775);
        let out = as_nobody(&op);
        assert!(out.status.success(), "{op}: {out:?}");
        assert_eq!(mode(&f), 0o775, "{op} by nobody drops setuid and setgid");
    }
    // Root has CAP_FSETID: its write keeps them.
    fresh(&f, 0o6775);
    OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(b"x")
        .unwrap();
    assert_eq!(mode(&f), 0o6775);
    // chown drops them, even by root.
    std::os::unix::fs::chown(&f, Some(0), None).unwrap();
    assert_eq!(mode(&f), 0o775);
    // A write removes file capabilities (a v2 `security.capability`:
    // cap_net_raw effective and permitted).
    fresh(&f, 0o755);
    let mut caps = vec![0u8; 20];
    caps[..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    caps[4..8].copy_from_slice(&(1u32 << 13).to_le_bytes());
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, "security.capability", &caps),
        0
    );
    assert_eq!(xattr_len(&f, "security.capability"), Ok(20));
    let out = as_nobody(&format!("echo x >> {fp}"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(xattr_len(&f, "security.capability"), Err(libc::ENODATA));
    m.finish();
}

#[test]
fn setgid_without_group_exec_goes_for_a_writer_outside_the_group() {
    if !fuse_available() {
        return;
    }
    let m = reachable_mount();
    let f = m.p("locked");
    let fp = f.to_str().unwrap().to_string();
    // setgid without group-exec (mandatory locking) stays for a member of
    // the file's group and goes for anyone else, as on ext4; a
    // supplementary group counts.
    let mut cases: Vec<(String, u32, &str, u32)> = changes(&fp)
        .into_iter()
        .map(|op| (op, 0, "", 0o664))
        .collect();
    cases.push((format!("echo x >> {fp}"), NOBODY, "", 0o2664));
    cases.push((format!("echo x >> {fp}"), 0, "0", 0o2664));
    cases.push((format!("truncate -s 1 {fp}"), 0, "0", 0o2664));
    for (op, group, groups, want) in cases {
        fresh(&f, 0o6664);
        std::os::unix::fs::chown(&f, None, Some(group)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o6664)).unwrap();
        let groups_arg = match groups {
            "" => "--clear-groups".to_string(),
            g => format!("--groups={g}"),
        };
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                &groups_arg,
                "sh",
                "-c",
                &op,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{op}: {out:?}");
        let who = format!("by nobody, file group {group}, groups [{groups}]");
        assert_eq!(mode(&f), want, "{op} {who}");
    }
    m.finish();
}
