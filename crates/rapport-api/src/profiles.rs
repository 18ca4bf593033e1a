//! Unified profiles: traits, identifiers, computed traits, memberships, timelines.
