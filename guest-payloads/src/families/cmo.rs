//! cmo (generator to come).

use trapdiff_arch::case::Case;

use crate::encode::Disassembler;
use crate::suite::SuiteError;

pub fn generate(_dis: &Disassembler) -> Result<Vec<Case>, SuiteError> {
    Ok(Vec::new())
}
