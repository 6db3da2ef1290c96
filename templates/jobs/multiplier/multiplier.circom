pragma circom 2.0.0;

// Proves knowledge of a and b whose product, squared repeatedly, gives out.
template Multiplier(rounds) {
    signal input a;
    signal input b;
    signal output out;
    signal steps[rounds + 1];
    steps[0] <== a * b;
    for (var i = 0; i < rounds; i++) {
        steps[i + 1] <== steps[i] * steps[i] + a;
    }
    out <== steps[rounds];
}

component main {public [a]} = Multiplier(1000);
