//! The wire side of the NIC: frames the switch sends out of the port go to a
//! [`NetBackend`]; frames arriving from the host are handed to
//! [`super::Nic82576::receive_from_wire`]. Without a backend, frames sent to the wire are
//! counted and discarded (an unplugged cable with the link reported up).

/// A host network backend (a TAP device in the VMM; a recorder in tests).
pub trait NetBackend: Send {
    /// Transmits one Ethernet frame (without FCS) to the host.
    fn send(&mut self, frame: &[u8]);
}

/// Records frames sent to the wire (tests).
#[derive(Debug, Default, Clone)]
pub struct RecordingBackend {
    pub frames: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl NetBackend for RecordingBackend {
    fn send(&mut self, frame: &[u8]) {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame.to_vec());
    }
}
