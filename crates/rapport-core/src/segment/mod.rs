//! The segment expression language (parser, type checker, evaluator).
