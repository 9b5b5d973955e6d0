"""Operations: admin socket, ``fuelswitch ops`` commands, metrics and logging setup."""
