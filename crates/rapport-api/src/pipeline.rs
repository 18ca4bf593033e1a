//! The pipeline: dead letters of every stage.
