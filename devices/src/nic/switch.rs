//! The internal switch (82576 datasheet, "Virtualization" chapter: VMDq receive
//! filtering by MAC address and VM-to-VM loopback, DTXSWC): a frame transmitted by one
//! pool is delivered by destination MAC to the pools whose receive address (RAL/RAH with
//! its pool bitmap) matches, without leaving the device, when loopback is enabled.
//! Broadcast and multicast go to every other pool and to the wire.

use super::regs::*;

/// Where a frame goes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Route {
    /// Bitmap of destination pools (pool n = VF n; the PF's pool is the number of VFs).
    pub pools: u32,
    /// Whether the frame also leaves on the wire (host backend).
    pub wire: bool,
}

pub fn is_multicast(mac: &[u8]) -> bool {
    mac.first().is_some_and(|b| b & 1 != 0)
}

/// Decodes RAR entry `i` from its RAL/RAH values: `(mac, pools)` when valid.
pub fn rar_entry(ral: u32, rah: u32) -> Option<([u8; 6], u32)> {
    if rah & RAH_AV == 0 {
        return None;
    }
    let l = ral.to_le_bytes();
    let h = rah.to_le_bytes();
    Some((
        [l[0], l[1], l[2], l[3], h[0], h[1]],
        (rah & RAH_POOL_MASK) >> RAH_POOL_SHIFT,
    ))
}

/// Routes a frame. `rars` are the valid receive addresses with their pool bitmaps (an
/// empty bitmap means the PF's pool), `src` is the sending pool (`None` for frames from
/// the wire), `pf_pool` the PF's pool, `all_pools` the bitmap of existing pools.
pub fn route(
    dst: &[u8],
    rars: &[([u8; 6], u32)],
    src: Option<u32>,
    pf_pool: u32,
    all_pools: u32,
    loopback: bool,
) -> Route {
    let not_src = src.map_or(u32::MAX, |s| !(1u32 << s));
    if is_multicast(dst) {
        return Route {
            pools: if loopback || src.is_none() {
                all_pools & not_src
            } else {
                0
            },
            wire: src.is_some(),
        };
    }
    let mut pools = 0;
    for (mac, p) in rars {
        if mac.as_slice() == dst {
            pools |= if *p == 0 { 1 << pf_pool } else { *p };
        }
    }
    pools &= all_pools & not_src;
    if src.is_some() && (!loopback || pools == 0) {
        return Route {
            pools: 0,
            wire: true,
        };
    }
    Route { pools, wire: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    #[test]
    fn unicast_broadcast_and_unknown() {
        let rars = [(A, 0b001), (B, 0b010)];
        let r = route(&B, &rars, Some(0), 2, 0b111, true);
        assert_eq!(
            r,
            Route {
                pools: 0b010,
                wire: false
            }
        );
        let r = route(&[0xff; 6], &rars, Some(0), 2, 0b111, true);
        assert_eq!(
            r,
            Route {
                pools: 0b110,
                wire: true
            }
        );
        let r = route(&[2, 9, 9, 9, 9, 9], &rars, Some(0), 2, 0b111, true);
        assert_eq!(
            r,
            Route {
                pools: 0,
                wire: true
            }
        );
        // Loopback disabled: to the wire.
        let r = route(&B, &rars, Some(0), 2, 0b111, false);
        assert_eq!(
            r,
            Route {
                pools: 0,
                wire: true
            }
        );
        // From the wire: to the matching pool, never back to the wire.
        let r = route(&A, &rars, None, 2, 0b111, false);
        assert_eq!(
            r,
            Route {
                pools: 0b001,
                wire: false
            }
        );
        // A frame to oneself does not loop back.
        let r = route(&A, &rars, Some(0), 2, 0b111, true);
        assert_eq!(
            r,
            Route {
                pools: 0,
                wire: true
            }
        );
    }

    #[test]
    fn rar_decoding() {
        assert_eq!(rar_entry(0x0403_0201, 0x0004_0605), None);
        assert_eq!(
            rar_entry(0x0403_0201, RAH_AV | (0b100 << RAH_POOL_SHIFT) | 0x0605),
            Some(([1, 2, 3, 4, 5, 6], 0b100))
        );
    }
}
