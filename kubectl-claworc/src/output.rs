//! `-o json|yaml` printing.
