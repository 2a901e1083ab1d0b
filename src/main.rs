fn main() -> std::process::ExitCode {
    sandstack::cli::main()
}
