//! Identity: resolution rules, probabilistic matching runs and the review queue.
