#include <string.h>
#include <linux/toy.h>

int main(void)
{
	return (int)strlen("busybox") + TOY_HEADERS_FIXED;
}
