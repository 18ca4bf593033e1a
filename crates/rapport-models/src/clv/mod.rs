//! Probabilistic purchase models and customer lifetime value.
