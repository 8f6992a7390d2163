//! The system registers' fields by name, as `tock-registers` bitfields:
//! what `aarch64-cpu` does not define (or defines differently) for AArch64
//! ([`aarch64`]), and the ARMv7 Hyp-mode and PL1 registers ([`armv7`]).
//!
//! Pure definitions, without any register access, so that they build (and
//! their positions are tested) on every target, the host included. Values
//! are composed with `FieldValue`s (`HCR::VM::SET + HCR::TWI::SET`, or in a
//! `const`, `HCR::VM::SET.value | HCR::TWI::SET.value`) and decoded with a
//! `LocalRegisterCopy`.

pub mod aarch64;
pub mod armv7;
