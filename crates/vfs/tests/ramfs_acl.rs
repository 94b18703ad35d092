//! POSIX ACLs and privilege bits on ramfs, the oracle: the shared
//! scenario of `acl_scenario`, which DiskFs runs too.

mod acl_scenario;

use aegis_vfs::RamFs;

#[test]
fn ramfs_applies_access_acls() {
    let fs = RamFs::new();
    acl_scenario::access_acl(&fs);
    acl_scenario::full_names_list(&fs);
}

#[test]
fn ramfs_inherits_default_acls_in_place_of_the_umask() {
    let fs = RamFs::new();
    acl_scenario::access_acl(&fs);
    acl_scenario::default_acl(&fs);
}

#[test]
fn ramfs_drops_privilege_bits_on_chown_and_truncate() {
    acl_scenario::privilege_bits(&RamFs::new());
}
