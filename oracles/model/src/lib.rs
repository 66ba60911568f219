//! The model oracle: predicts a case's outcome from written architecture rules and a named
//! hypervisor policy profile, with Unicorn for instruction semantics and Capstone to classify.
