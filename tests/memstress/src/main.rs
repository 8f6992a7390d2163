//! `memstress [-t THREADS] [-p PASSES] [-m SIZE|PERCENT%]`: see the
//! library's documentation (`memstress::main_with`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = memstress::main_with(&args, &mut std::io::stdout().lock());
    std::process::exit(status);
}
