//! Test support: a fake Responses API and builders of its answers.

pub mod fake_openai;
pub mod harness;
pub mod responses;
