//! Prints the measured FMA peak for every ISA of this host with 1 and 2 threads.
fn main() {
    for isa in brats_kernels::Isa::available() {
        for threads in [1, 2] {
            let g = brats_kernels::peak::measure_peak_gflops(isa, threads, 300);
            println!("{:9} {threads}t {g:8.1} GFLOP/s", isa.name());
        }
    }
}
