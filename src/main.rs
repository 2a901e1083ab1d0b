fn main() -> std::process::ExitCode {
    // This executable also runs sandstack's helper processes.
    sandstack::child::serve_from_this_executable();
    sandstack::cli::main()
}
