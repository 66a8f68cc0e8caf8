//! A metrics observer for the NIC, in the style of vm-superio's `SerialEvents`: the VMM
//! plugs in an implementation that feeds its metrics/tracing; the default does nothing.
//! Called synchronously from inside register accesses; must not call back into the NIC.

use super::Function;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No receive descriptors between head and tail (or head/tail beyond the ring).
    NoDescriptors,
    /// Longer than the receiving function accepts.
    Oversize,
    /// The receiving function's receiver (RCTL.EN / VFRE) or bus mastering is off.
    ReceiverDisabled,
    /// A descriptor or buffer DMA was aborted.
    DmaAborted,
    /// A transmitted frame was malformed (runt, oversized, bad TSO context, aborted
    /// buffer fetch).
    TxMalformed,
}

/// NIC events.
pub trait NicEvents: Send + Sync {
    /// A function transmitted a frame; `pools` is where the switch delivered it.
    fn frame_transmitted(&self, _from: Function, _len: usize, _pools: u32, _to_wire: bool) {}
    /// A frame was written into a function's receive ring.
    fn frame_received(&self, _to: Function, _len: usize) {}
    fn frame_dropped(&self, _at: Function, _why: DropReason) {}
    /// A function's interrupt vector fired (MSI-X, or MSI on the PF).
    fn interrupt(&self, _from: Function, _vector: usize) {}
}

/// No observer.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl NicEvents for NoEvents {}
