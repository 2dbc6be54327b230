"""Operations: the only code that changes the host (files, fstab, services, packages, locks),
each reporting what it changed. Every command goes through subp."""
