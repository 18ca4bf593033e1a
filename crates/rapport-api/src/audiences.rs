//! Audiences: segments and computed traits, their definitions, members and changes.
