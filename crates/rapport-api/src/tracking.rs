//! The tracking API: Segment's and RudderStack's message shapes and Rapport's answers.
