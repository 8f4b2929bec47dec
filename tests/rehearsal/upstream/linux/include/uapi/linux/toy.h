#ifndef _UAPI_LINUX_TOY_H
#define _UAPI_LINUX_TOY_H
#define TOY_KERNEL_MAGIC 64
#endif
