//! The codec against hand-made Linux xattr bytes, each refusal of the
//! kernel's validation, and the algorithms against the results
//! `posix_acl.c` gives for the same inputs.

use super::*;

/// Raw xattr bytes: version 2, then (tag, perm, id) entries.
fn raw(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

const U: u32 = UNDEFINED_ID;

/// `user::rw- user:1000:rwx group::r-- mask::rwx other::---`, as setfacl
/// writes it.
fn named() -> Vec<u8> {
    raw(&[
        (1, 6, U),
        (2, 7, 1000),
        (4, 4, U),
        (0x10, 7, U),
        (0x20, 0, U),
    ])
}

fn err(v: &[u8]) -> i32 {
    Acl::decode(v).unwrap_err().errno()
}

fn req(uid: u32, gid: u32) -> Request {
    Request {
        uid,
        gid,
        pid: 1,
        umask: 0,
    }
}

#[test]
fn decode_encode_round_trip() {
    let acl = Acl::decode(&named()).unwrap().unwrap();
    assert_eq!(acl.entries().len(), 5);
    assert_eq!(acl.entries()[1].tag, Tag::User(1000));
    assert_eq!(acl.encode(), named());
    // Ids of the unnamed entries are not kept: they encode as -1.
    let odd = raw(&[(1, 6, 5), (4, 4, 6), (0x20, 0, 7)]);
    let acl = Acl::decode(&odd).unwrap().unwrap();
    assert_eq!(acl.encode(), raw(&[(1, 6, U), (4, 4, U), (0x20, 0, U)]));
    assert_eq!(acl, Acl::from_mode(0o640));
    // A header alone is no ACL.
    assert_eq!(Acl::decode(&raw(&[])).unwrap(), None);
}

#[test]
fn malformed_values_are_refused_as_linux_does() {
    assert_eq!(err(b"\x02\x00"), libc::EINVAL);
    let mut v = named();
    v[0] = 1;
    assert_eq!(err(&v), libc::EOPNOTSUPP);
    let mut v = named();
    v.push(0);
    assert_eq!(err(&v), libc::EINVAL);
    // Unknown tag, permission beyond rwx, a named entry for id -1.
    assert_eq!(
        err(&raw(&[(1, 6, U), (0x40, 4, U), (0x20, 0, U)])),
        libc::EINVAL
    );
    assert_eq!(
        err(&raw(&[(1, 8, U), (4, 4, U), (0x20, 0, U)])),
        libc::EINVAL
    );
    let v = raw(&[(1, 6, U), (2, 7, U), (4, 4, U), (0x10, 7, U), (0x20, 0, U)]);
    assert_eq!(err(&v), libc::EINVAL);
}

#[test]
fn entries_must_be_in_order_and_complete() {
    let bad: &[&[(u16, u16, u32)]] = &[
        // No USER_OBJ, two of them, GROUP_OBJ before USER_OBJ.
        &[(4, 4, U), (0x20, 0, U)],
        &[(1, 6, U), (1, 6, U), (4, 4, U), (0x20, 0, U)],
        &[(4, 4, U), (1, 6, U), (0x20, 0, U)],
        // No OTHER, two OTHERs, a named user after the group.
        &[(1, 6, U), (4, 4, U)],
        &[(1, 6, U), (4, 4, U), (0x20, 0, U), (0x20, 0, U)],
        &[(1, 6, U), (4, 4, U), (2, 7, 5), (0x10, 7, U), (0x20, 0, U)],
        // Named entries without a MASK, a MASK after OTHER.
        &[(1, 6, U), (2, 7, 5), (4, 4, U), (0x20, 0, U)],
        &[(1, 6, U), (4, 4, U), (8, 7, 5), (0x20, 0, U), (0x10, 7, U)],
    ];
    for entries in bad {
        assert_eq!(err(&raw(entries)), libc::EINVAL, "{entries:?}");
    }
    // A MASK without named entries is valid.
    Acl::decode(&raw(&[(1, 6, U), (4, 4, U), (0x10, 7, U), (0x20, 0, U)])).unwrap();
}

#[test]
fn too_many_entries_is_e2big() {
    let mut e = vec![(1, 6, U)];
    e.extend((0..ACL_MAX_ENTRIES as u32 - 4).map(|i| (2u16, 4u16, i)));
    e.extend([(4, 4, U), (0x10, 7, U), (0x20, 0, U)]);
    assert_eq!(e.len(), ACL_MAX_ENTRIES);
    Acl::decode(&raw(&e)).unwrap().unwrap();
    e.insert(1, (2, 4, 99_999));
    assert_eq!(err(&raw(&e)), libc::E2BIG);
}

#[test]
fn equiv_mode_chmod_and_create_masq() {
    let acl = Acl::decode(&named()).unwrap().unwrap();
    // The group bits show the mask; named entries make it not equivalent.
    assert_eq!(acl.equiv_mode(), (0o670, false));
    assert_eq!(Acl::from_mode(0o751).equiv_mode(), (0o751, true));
    let mut c = acl.clone();
    c.chmod(0o704);
    let perms: Vec<u16> = c.entries().iter().map(|e| e.perm).collect();
    // Owner 7, the named user kept, group_obj kept, mask 0, other 4.
    assert_eq!(perms, [7, 7, 4, 0, 4]);
    let mut plain = Acl::from_mode(0o777);
    plain.chmod(0o640);
    assert_eq!(plain, Acl::from_mode(0o640));
    // posix_acl_create_masq with mode 0o640: owner rw, mask r, other none.
    let mut m = acl.clone();
    assert_eq!(
        m.create_masq(libc::S_IFREG | 0o640),
        (libc::S_IFREG | 0o640, false)
    );
    let perms: Vec<u16> = m.entries().iter().map(|e| e.perm).collect();
    assert_eq!(perms, [6, 7, 4, 4, 0]);
    // Without named entries or mask: equivalent, the mode is the AND.
    let mut p = Acl::from_mode(0o750);
    assert_eq!(p.create_masq(0o666), (0o640, true));
}

#[test]
fn permission_follows_the_entries_and_the_mask() {
    let acl = Acl::decode(&named()).unwrap().unwrap();
    let perm = 0o670; // mode bits as the ACL sets them
    let ok = |r: Request, want| non_owner_permits(&r, 50, perm, Some(&acl), want);
    // The named user gets rwx through mask rwx.
    assert!(ok(req(1000, 9), 7));
    // The owning group gets r only; other nothing.
    assert!(ok(req(2, 50), 4));
    assert!(!ok(req(2, 50), 2));
    assert!(!ok(req(2, 9), 4));
    // A mask of r-- limits the named user.
    let mut masked = acl.clone();
    masked.chmod(0o640);
    assert!(non_owner_permits(
        &req(1000, 9),
        50,
        0o640,
        Some(&masked),
        4
    ));
    assert!(!non_owner_permits(
        &req(1000, 9),
        50,
        0o640,
        Some(&masked),
        2
    ));
    // No ACL: the mode bits.
    assert!(non_owner_permits(&req(2, 50), 50, 0o640, None, 4));
    assert!(!non_owner_permits(&req(2, 9), 50, 0o640, None, 4));
}

fn target(perm: u32, is_dir: bool) -> AclTarget {
    AclTarget {
        uid: 1000,
        gid: 50,
        perm,
        is_dir,
    }
}

#[test]
fn set_acl_updates_the_mode_and_checks_the_caller() {
    let owner = req(1000, 50);
    let c = set_acl(&owner, AclKind::Access, &named(), target(0o644, false)).unwrap();
    assert_eq!(
        c,
        AclChange {
            value: Some(named()),
            perm: 0o670
        }
    );
    // Equivalent to mode bits: only the mode is kept.
    let plain = Acl::from_mode(0o751).encode();
    let c = set_acl(&owner, AclKind::Access, &plain, target(0o4644, false)).unwrap();
    assert_eq!(
        c,
        AclChange {
            value: None,
            perm: 0o4751
        }
    );
    // Not the owner: EPERM; root may.
    let e = set_acl(&req(7, 50), AclKind::Access, &named(), target(0o644, false));
    assert_eq!(e.unwrap_err().errno(), libc::EPERM);
    set_acl(&req(0, 0), AclKind::Access, &named(), target(0o644, false)).unwrap();
    // A caller outside the group loses setgid.
    let c = set_acl(
        &req(1000, 7),
        AclKind::Access,
        &named(),
        target(0o2644, false),
    )
    .unwrap();
    assert_eq!(c.perm, 0o670);
    // A default ACL only on directories; removing one elsewhere is fine.
    let e = set_acl(&owner, AclKind::Default, &named(), target(0o644, false));
    assert_eq!(e.unwrap_err().errno(), libc::EACCES);
    set_acl(&owner, AclKind::Default, &raw(&[]), target(0o644, false)).unwrap();
    let c = set_acl(&owner, AclKind::Default, &named(), target(0o755, true)).unwrap();
    assert_eq!(
        c,
        AclChange {
            value: Some(named()),
            perm: 0o755
        }
    );
    // Malformed values are refused before anything else.
    let e = set_acl(&owner, AclKind::Access, b"junk", target(0o644, false));
    assert_eq!(e.unwrap_err().errno(), libc::EOPNOTSUPP);
}

#[test]
fn inherit_replaces_the_umask_under_a_default_acl() {
    let none = inherit(None, false, false, libc::S_IFREG | 0o666, 0o022);
    assert_eq!(none.perm, libc::S_IFREG | 0o644);
    assert_eq!((none.access, none.default), (None, None));
    let default = Acl::decode(&named()).unwrap().unwrap();
    let file = inherit(Some(&default), false, false, 0o666, 0o077);
    assert_eq!(file.perm, 0o660); // owner rw, mask rw, other none; no umask
    assert!(file.access.is_some() && file.default.is_none());
    let dir = inherit(Some(&default), true, false, 0o777, 0o077);
    assert_eq!(dir.perm, 0o670);
    assert_eq!(dir.default, Some(named()));
    let acc = Acl::decode(dir.access.as_ref().unwrap()).unwrap().unwrap();
    assert_eq!(acc.equiv_mode(), (0o670, false));
    // A default ACL of mode bits only gives no access ACL.
    let plain = Acl::from_mode(0o750);
    let f = inherit(Some(&plain), false, false, 0o666, 0o077);
    assert_eq!((f.perm, f.access), (0o640, None));
    // Symlinks take neither the ACL nor the umask.
    let l = inherit(Some(&default), false, true, 0o777, 0o077);
    assert_eq!((l.perm, l.access, l.default), (0o777, None, None));
}

#[test]
fn stored_damage_is_eio() {
    assert_eq!(
        decode_stored(b"\x02\x00\x00\x00\x01").unwrap_err().errno(),
        libc::EIO
    );
    let v = chmod_acl(&named(), 0o600).unwrap().unwrap();
    assert_eq!(
        Acl::decode(&v).unwrap().unwrap().equiv_mode(),
        (0o600, false)
    );
}
