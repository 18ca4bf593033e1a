//! The Segment-spec event model.
