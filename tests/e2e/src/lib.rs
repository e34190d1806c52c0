//! End-to-end tests through a real Envoy live in tests/.
