#include <linux/toy.h>

int start_kernel(void)
{
	return TOY_KERNEL_MAGIC;
}
