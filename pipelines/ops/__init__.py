"""Operations: metrics, error reporting, and the fault points crash tests stop at."""
