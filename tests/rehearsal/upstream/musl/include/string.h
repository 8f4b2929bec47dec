#ifndef _STRING_H
#define _STRING_H
typedef __SIZE_TYPE__ size_t;
size_t strlen(const char *);
#endif
