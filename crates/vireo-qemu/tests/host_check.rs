//! `host_check` on the machine running the tests (which has QEMU installed).

use vireo_api::CheckStatus;

#[tokio::test]
async fn reports_every_item_and_finds_qemu() {
    let check = vireo_qemu::host_check().await;
    eprintln!("{}", serde_json::to_string_pretty(&check).unwrap());
    let names: Vec<&str> = check.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["qemu-system-x86_64", "qemu-img", "accelerator", "/dev/kvm", "cgroups", "hugepages", "kvm modules"]
    );
    assert!(check.accel == "kvm" || check.accel == "tcg", "{}", check.accel);
    assert!(!check.accel_reason.is_empty());
    let qemu = &check.items[0];
    assert_eq!(qemu.status, CheckStatus::Ok, "{qemu:?}");
    assert!(qemu.detail.contains("QEMU emulator version"), "{}", qemu.detail);
    for item in &check.items {
        assert!(item.status == CheckStatus::Ok || item.fix.is_some() || item.name == "/dev/kvm", "{item:?}");
    }
}
