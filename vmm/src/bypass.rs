//! The `bypass` backend's host detection: whether this host can hand a VF's interrupts to
//! the hardware (VFIO + KVM irqfd, VT-d posted interrupts, APICv), and whether the device
//! named by `--vfio-device` can be assigned.
//!
//! Every check reads the host's sysfs and /dev through a root directory, so the same code
//! is tested against fake trees. The VFIO wiring itself (container, group, device, BAR
//! mapping, MSI-X eventfds to KVM irqfds) needs a host with VFIO and is not built yet: see
//! the README's feature table.

use std::fs;
use std::path::{Path, PathBuf};

/// CAP.PI, bit 59 of the VT-d capability register (sysfs prints CAP in hex).
const VTD_CAP_PI: u64 = 1 << 59;

/// What the host offers for interrupt bypass; each field is `Err(reason)` when missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSupport {
    pub vfio: Result<(), String>,
    pub posted_interrupts: Result<(), String>,
    pub apicv: Result<(), String>,
}

impl HostSupport {
    pub fn available(&self) -> bool {
        self.vfio.is_ok() && self.posted_interrupts.is_ok() && self.apicv.is_ok()
    }

    /// One line naming what is missing.
    pub fn missing(&self) -> String {
        [&self.vfio, &self.posted_interrupts, &self.apicv]
            .iter()
            .filter_map(|r| r.as_ref().err().cloned())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Inspects the host under `root` ("/" for the real one).
pub fn detect(root: &Path) -> HostSupport {
    HostSupport {
        vfio: vfio(root),
        posted_interrupts: posted_interrupts(root),
        apicv: apicv(root),
    }
}

fn vfio(root: &Path) -> Result<(), String> {
    let dev = root.join("dev/vfio/vfio");
    if dev.exists() {
        Ok(())
    } else {
        Err(format!("no VFIO ({} missing)", dev.display()))
    }
}

fn posted_interrupts(root: &Path) -> Result<(), String> {
    let dir = root.join("sys/class/iommu");
    let entries =
        fs::read_dir(&dir).map_err(|_| format!("no IOMMU ({} missing)", dir.display()))?;
    let mut seen = 0;
    for entry in entries.flatten() {
        let cap = entry.path().join("intel-iommu/cap");
        let Ok(text) = fs::read_to_string(&cap) else {
            continue;
        };
        seen += 1;
        let value = u64::from_str_radix(text.trim().trim_start_matches("0x"), 16)
            .map_err(|_| format!("unreadable VT-d capability in {}", cap.display()))?;
        if value & VTD_CAP_PI == 0 {
            return Err(format!(
                "VT-d unit {} lacks posted interrupts (CAP.PI clear)",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    if seen == 0 {
        Err("no Intel VT-d unit in /sys/class/iommu".into())
    } else {
        Ok(())
    }
}

fn apicv(root: &Path) -> Result<(), String> {
    let param = root.join("sys/module/kvm_intel/parameters/enable_apicv");
    match fs::read_to_string(&param) {
        Ok(v) if matches!(v.trim(), "Y" | "1") => Ok(()),
        Ok(_) => Err("APICv is disabled (kvm_intel enable_apicv=N)".into()),
        Err(_) => Err("no APICv (kvm_intel not loaded: no VMX)".into()),
    }
}

/// A VF ready for assignment: its sysfs directory and the VFIO group device node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignableDevice {
    pub sysfs: PathBuf,
    pub group: PathBuf,
}

/// Checks that `device` (a PCI device's sysfs directory, or its address such as
/// 0000:03:10.0) is bound to vfio-pci and has an IOMMU group with a VFIO node.
pub fn assignable(root: &Path, device: &Path) -> Result<AssignableDevice, String> {
    let sysfs = if device.is_absolute() && device.starts_with("/sys") {
        root.join(device.strip_prefix("/").unwrap_or(device))
    } else if device.components().count() == 1 {
        root.join("sys/bus/pci/devices").join(device)
    } else {
        root.join(device)
    };
    if !sysfs.is_dir() {
        return Err(format!("{}: no such PCI device", device.display()));
    }
    let driver = fs::read_link(sysfs.join("driver")).map_err(|_| {
        format!(
            "{}: not bound to any driver (bind it to vfio-pci)",
            device.display()
        )
    })?;
    if driver.file_name().and_then(|n| n.to_str()) != Some("vfio-pci") {
        return Err(format!(
            "{}: bound to {}, not vfio-pci",
            device.display(),
            driver.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    let group = fs::read_link(sysfs.join("iommu_group"))
        .map_err(|_| format!("{}: no IOMMU group", device.display()))?;
    let group_id = group
        .file_name()
        .ok_or_else(|| format!("{}: malformed IOMMU group link", device.display()))?;
    let node = root.join("dev/vfio").join(group_id);
    if !node.exists() {
        return Err(format!("{}: {} missing", device.display(), node.display()));
    }
    Ok(AssignableDevice { sysfs, group: node })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("postbox-bypass-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        root
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn a_host_with_everything_is_detected() {
        let root = tree("full");
        write(&root, "dev/vfio/vfio", "");
        write(
            &root,
            "sys/class/iommu/dmar0/intel-iommu/cap",
            "d2008c40660462\n",
        );
        write(
            &root,
            "sys/class/iommu/dmar1/intel-iommu/cap",
            &format!("{:x}\n", VTD_CAP_PI | 0x40),
        );
        // dmar0's CAP lacks PI: the host cannot post for devices behind it.
        let s = detect(&root);
        assert!(s.vfio.is_ok());
        assert!(s.posted_interrupts.unwrap_err().contains("dmar0"));
        write(
            &root,
            "sys/class/iommu/dmar0/intel-iommu/cap",
            "8d2008c40660462\n",
        );
        write(&root, "sys/module/kvm_intel/parameters/enable_apicv", "Y\n");
        let s = detect(&root);
        assert!(s.available(), "{}", s.missing());
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn this_kind_of_host_reports_what_is_missing() {
        let root = tree("empty");
        let s = detect(&root);
        assert!(!s.available());
        let missing = s.missing();
        assert!(missing.contains("no VFIO"), "{missing}");
        assert!(missing.contains("no IOMMU"), "{missing}");
        assert!(missing.contains("no APICv"), "{missing}");
        write(&root, "sys/module/kvm_intel/parameters/enable_apicv", "N\n");
        assert!(detect(&root).apicv.unwrap_err().contains("disabled"));
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn device_assignment_checks_driver_and_group() {
        let root = tree("dev");
        let dev = root.join("sys/bus/pci/devices/0000:03:10.0");
        fs::create_dir_all(&dev).unwrap();
        let addr = Path::new("0000:03:10.0");
        assert!(assignable(&root, addr).unwrap_err().contains("not bound"));
        fs::create_dir_all(root.join("sys/bus/pci/drivers/igbvf")).unwrap();
        symlink(root.join("sys/bus/pci/drivers/igbvf"), dev.join("driver")).unwrap();
        assert!(assignable(&root, addr)
            .unwrap_err()
            .contains("bound to igbvf"));
        fs::remove_file(dev.join("driver")).unwrap();
        fs::create_dir_all(root.join("sys/bus/pci/drivers/vfio-pci")).unwrap();
        symlink(
            root.join("sys/bus/pci/drivers/vfio-pci"),
            dev.join("driver"),
        )
        .unwrap();
        fs::create_dir_all(root.join("sys/kernel/iommu_groups/17")).unwrap();
        symlink(
            root.join("sys/kernel/iommu_groups/17"),
            dev.join("iommu_group"),
        )
        .unwrap();
        assert!(assignable(&root, addr)
            .unwrap_err()
            .contains("dev/vfio/17 missing"));
        write(&root, "dev/vfio/17", "");
        let a = assignable(&root, addr).unwrap();
        assert_eq!(a.group, root.join("dev/vfio/17"));
        assert!(assignable(&root, Path::new("0000:99:00.0"))
            .unwrap_err()
            .contains("no such"));
        fs::remove_dir_all(root).ok();
    }
}
