//! The pure model pipeline, without KVM (being written).
