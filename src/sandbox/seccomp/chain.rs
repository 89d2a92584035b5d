//! The errno programs chained into one, so an execution installs one filter where it installed
//! four. Each installed filter costs its own verification, JIT compilation, executable
//! allocation and action cache, every execution (a tenth of the script process's CPU for a hello
//! world), and the kernel runs every installed filter on every system call after.
//!
//! A program answers "allow" when nothing in it matched; chained, that answer becomes a jump to
//! the next program's first instruction, and the last program's stays "allow". Each program
//! loads what it tests itself (the architecture, the number, the arguments), so none depends on
//! what an earlier one left in the accumulator. The first program that does not allow decides:
//! separately installed, the kernel takes the most restrictive answer of all. The two agree
//! because no system call is refused by two errno programs (tested in `super`), and a foreign
//! architecture is killed by the first program that checks it.

use seccompiler::sock_filter;

const RET_K: u16 = 0x06; // BPF_RET | BPF_K
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const RET_ALLOW: u32 = 0x7fff_0000;

/// `programs` as one program (empty for none).
pub fn chained(programs: &[Vec<sock_filter>]) -> Vec<sock_filter> {
    let mut chain = Vec::with_capacity(programs.iter().map(Vec::len).sum());
    let Some((last, earlier)) = programs.split_last() else {
        return chain;
    };
    for program in earlier {
        let next = program.len();
        chain.extend(program.iter().enumerate().map(|(index, instruction)| {
            if instruction.code == RET_K && instruction.k == RET_ALLOW {
                // To the next program: a jump's offset counts from the instruction after it.
                sock_filter {
                    code: JA,
                    jt: 0,
                    jf: 0,
                    k: (next - index - 1) as u32,
                }
            } else {
                instruction.clone()
            }
        }));
    }
    chain.extend_from_slice(last);
    chain
}

#[cfg(test)]
mod tests {
    use super::super::{Policy, SignalScope};
    use super::*;

    /// What a classic BPF seccomp program answers for one system call: the subset of classic
    /// BPF that seccompiler and the x32 guard emit, run as the kernel runs it.
    fn run(program: &[sock_filter], data: &[u32; 16]) -> u32 {
        let (mut accumulator, mut at) = (0u32, 0usize);
        loop {
            let instruction = program[at].clone();
            let k = instruction.k;
            at += 1;
            match instruction.code {
                0x20 => accumulator = data[k as usize / 4], // LD W ABS
                0x54 => accumulator &= k,                   // ALU AND K
                0x06 => return k,                           // RET K
                0x05 => at += k as usize,                   // JA
                code @ (0x15 | 0x25 | 0x35 | 0x45) => {
                    let taken = match code {
                        0x15 => accumulator == k,
                        0x25 => accumulator > k,
                        0x35 => accumulator >= k,
                        _ => accumulator & k != 0,
                    };
                    at += usize::from(if taken {
                        instruction.jt
                    } else {
                        instruction.jf
                    });
                }
                code => panic!("an instruction this test cannot run: {code:#x}"),
            }
        }
    }

    /// The kernel's choice among several filters' answers: the most restrictive action.
    fn most_restrictive(answers: impl Iterator<Item = u32>) -> u32 {
        answers
            .min_by_key(|answer| (answer & 0xffff_0000) as i32)
            .expect("at least one")
    }

    fn seccomp_data(arch: u32, nr: u32, first_argument: u64) -> [u32; 16] {
        let mut data = [0u32; 16];
        data[0] = nr;
        data[1] = arch;
        data[4] = first_argument as u32;
        data[5] = (first_argument >> 32) as u32;
        data
    }

    #[test]
    fn the_chain_answers_as_the_separate_programs_do() {
        const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
        const AUDIT_ARCH_I386: u32 = 0x4000_0003;
        let arguments = [0u64, 1, u64::from(u32::MAX), 9, 0x10_0000_0000];
        for scope in [SignalScope::Namespace, SignalScope::GroupOnly] {
            let policy = Policy::build(scope).expect("policy");
            let separate: Vec<Vec<sock_filter>> = policy.programs.clone();
            let chain = chained(&separate);
            assert_eq!(chain.len(), separate.iter().map(Vec::len).sum::<usize>());
            let mut refused = 0;
            for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386] {
                let numbers = (0..600).chain((0..600).map(|nr| nr | 0x4000_0000));
                for nr in numbers {
                    for argument in arguments {
                        let data = seccomp_data(arch, nr, argument);
                        let expected =
                            most_restrictive(separate.iter().map(|program| run(program, &data)));
                        assert_eq!(run(&chain, &data), expected, "arch {arch:#x} nr {nr}");
                        refused += usize::from(expected != RET_ALLOW);
                    }
                }
            }
            // The comparison means something only if both answers occur.
            assert!(refused > 0 && refused < 2 * 1200 * arguments.len());
        }
    }

    #[test]
    fn no_programs_chain_to_nothing_and_one_stays_itself() {
        assert!(chained(&[]).is_empty());
        let policy = Policy::build(SignalScope::Namespace).expect("policy");
        let one = policy.programs[0].clone();
        assert_eq!(chained(std::slice::from_ref(&one)), one);
    }
}
