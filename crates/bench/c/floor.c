/*
 * The benchmark's true floor: a static program with no C library and no runtime that exits at once, so that a row
 * measured against it is the cost of starting any process at all here (fork or spawn, exec, exit, wait) and nothing
 * else. scripts/bench.sh builds it with the system's C compiler:
 *
 *     cc -O2 -static -nostdlib -fno-pie -no-pie -o floor-c floor.c
 */
void _start(void)
{
#if defined(__x86_64__)
    __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall"); /* exit(0) */
#elif defined(__aarch64__)
    __asm__ volatile("mov x8, #93\n\tmov x0, #0\n\tsvc #0"); /* exit(0) */
#else
#error "floor.c knows the exit system call of x86_64 and aarch64 only"
#endif
    for (;;) {
    }
}
