#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    portcullis::cmd::main()
}
