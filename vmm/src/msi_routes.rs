//! The `kernel` backend's MSI path: GSI routing + irqfd, as a VMM with out-of-process
//! devices (vhost, VFIO) uses it. Each distinct (address, data) message gets a GSI with an
//! MSI route and an eventfd registered as its irqfd; delivering the message is one write to
//! that eventfd, and KVM's in-kernel LAPIC does the rest.

use std::collections::HashMap;
use std::sync::Mutex;

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_msi, KvmIrqRouting,
    KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

/// GSIs below this belong to the (userspace) IOAPIC pins of the split irqchip.
const FIRST_MSI_GSI: u32 = 24;
/// Most routes the cache keeps before it starts over (KVM allows 4096).
const MAX_ROUTES: usize = 1024;

/// One message as KVM routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsiKey {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
}

struct Route {
    gsi: u32,
    event: EventFd,
}

#[derive(Default)]
struct Table {
    routes: HashMap<MsiKey, Route>,
}

/// The route cache of one VM.
#[derive(Default)]
pub struct MsiRoutes {
    table: Mutex<Table>,
}

fn entry(gsi: u32, key: &MsiKey) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        flags: 0,
        pad: 0,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            msi: kvm_irq_routing_msi {
                address_lo: key.address_lo,
                address_hi: key.address_hi,
                data: key.data,
                ..Default::default()
            },
        },
    }
}

impl MsiRoutes {
    /// Delivers `key` through its irqfd, creating the route on first use.
    pub fn deliver(&self, vm: &VmFd, key: MsiKey) -> Result<(), String> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = table.routes.get(&key) {
            return route
                .event
                .write(1)
                .map_err(|e| format!("irqfd write: {e}"));
        }
        if table.routes.len() >= MAX_ROUTES {
            for route in table.routes.values() {
                let _ = vm.unregister_irqfd(&route.event, route.gsi);
            }
            table.routes.clear();
        }
        let gsi = FIRST_MSI_GSI + table.routes.len() as u32;
        let mut routing = KvmIrqRouting::new(table.routes.len() + 1)
            .map_err(|e| format!("routing table: {e:?}"))?;
        {
            let entries = routing.as_mut_slice();
            for (i, (k, r)) in table.routes.iter().enumerate() {
                entries[i] = entry(r.gsi, k);
            }
            entries[table.routes.len()] = entry(gsi, &key);
        }
        vm.set_gsi_routing(&routing)
            .map_err(|e| format!("KVM_SET_GSI_ROUTING: {e}"))?;
        let event = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| format!("eventfd: {e}"))?;
        vm.register_irqfd(&event, gsi)
            .map_err(|e| format!("KVM_IRQFD: {e}"))?;
        event.write(1).map_err(|e| format!("irqfd write: {e}"))?;
        tracing::debug!(gsi, ?key, "MSI route added");
        table.routes.insert(key, Route { gsi, event });
        Ok(())
    }

    /// Number of routes set up.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .routes
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
